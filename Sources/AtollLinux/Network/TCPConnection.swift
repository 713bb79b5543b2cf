public import AtollCore
public import Glibc

/// Outgoing TCP connections to a sandbox's address, made in the network namespace that plays the
/// host (where the sandbox bridge is), so a daemon whose own namespace has no route there — a
/// test harness's — still reaches it.
public enum TCPConnection {
    /// Connects to `address:port` (IPv4) within `timeout` seconds. `namespacePath` names the
    /// network namespace the socket is made in (nil: this process's own). Returns a connected,
    /// non-blocking, close-on-exec socket. A refused or timed-out connect is `unavailable`,
    /// naming the address, so callers can answer "nothing listens there".
    public static func connect(address: String, port: UInt16, namespacePath: String?, timeout: Double) throws(AtollError) -> OwnedFD {
        let socket: OwnedFD
        if let namespacePath {
            let namespace = try OwnedFD(path: namespacePath, flags: O_RDONLY)
            socket = try HostNetwork.socket(in: namespace, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        } else {
            let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw SystemError.last("socket", "AF_INET") }
            socket = OwnedFD(fd)
        }
        // A socket made in another namespace comes back blocking: make sure it is not.
        let flags = fcntl(socket.raw, F_GETFL)
        _ = fcntl(socket.raw, F_SETFL, flags | O_NONBLOCK)
        let target = "\(address):\(port)"
        let rc = IPv4SocketAddress.with(address, port) { Glibc.connect(socket.raw, $0, $1) }
        if rc == 0 { return socket }
        guard errno == EINPROGRESS else { throw refused(errno, target) }
        var poll = pollfd(fd: socket.raw, events: Int16(POLLOUT), revents: 0)
        let ready = Glibc.poll(&poll, 1, Int32(timeout * 1000))
        guard ready > 0 else {
            if ready < 0 { throw SystemError.last("poll", target) }
            throw AtollError(.unavailable, "connecting to \(target) timed out after \(timeout) s")
        }
        var failure: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(socket.raw, SOL_SOCKET, SO_ERROR, &failure, &length) == 0 else { throw SystemError.last("getsockopt(SO_ERROR)", target) }
        guard failure == 0 else { throw refused(failure, target) }
        return socket
    }

    static func refused(_ err: Int32, _ target: String) -> AtollError {
        AtollError(.unavailable, "connect(\(target)): \(SystemError.describe(err))", cause: SystemCallError(call: "connect", path: target, errno: err))
    }
}
