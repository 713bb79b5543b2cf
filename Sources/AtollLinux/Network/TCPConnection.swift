public import AtollCore
public import Glibc

/// Outgoing TCP connections to a sandbox's address, made in the network namespace that plays the
/// host (where the sandbox bridge is), so a daemon whose own namespace has no route there — a
/// test harness's — still reaches it. The connect is non-blocking: `start` begins it and
/// `finished` asks, without waiting, whether it is done, so a caller can wait for it without
/// holding a thread (a sandbox's port that never answers must not tie one up).
public enum TCPConnection {
    /// Begins connecting to `address:port` (IPv4) from a socket made in `namespacePath` (nil:
    /// this process's own namespace). Returns the non-blocking, close-on-exec socket and whether
    /// it is connected already.
    public static func start(address: String, port: UInt16, namespacePath: String?) throws(AtollError) -> (socket: OwnedFD, connected: Bool) {
        let socket: OwnedFD
        if let namespacePath {
            let namespace = try OwnedFD(path: namespacePath, flags: O_RDONLY)
            socket = try HostNetwork.socket(in: namespace, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        } else {
            let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw SystemError.last("socket", "AF_INET") }
            socket = OwnedFD(fd)
        }
        // Make sure of non-blocking whichever way the socket was made.
        _ = fcntl(socket.raw, F_SETFL, fcntl(socket.raw, F_GETFL) | O_NONBLOCK)
        let target = "\(address):\(port)"
        let rc = IPv4SocketAddress.with(address, port) { Glibc.connect(socket.raw, $0, $1) }
        if rc == 0 { return (socket, true) }
        guard errno == EINPROGRESS else { throw refused(errno, target) }
        return (socket, false)
    }

    /// Whether a connect `start` began has finished: true once connected, false while it is
    /// still under way; a refused or failed connect throws `unavailable` naming the address.
    public static func finished(_ socket: OwnedFD, target: String) throws(AtollError) -> Bool {
        var poll = pollfd(fd: socket.raw, events: Int16(POLLOUT), revents: 0)
        let ready = Glibc.poll(&poll, 1, 0)
        if ready < 0 { throw SystemError.last("poll", target) }
        if ready == 0 { return false }
        var failure: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(socket.raw, SOL_SOCKET, SO_ERROR, &failure, &length) == 0 else { throw SystemError.last("getsockopt(SO_ERROR)", target) }
        guard failure == 0 else { throw refused(failure, target) }
        return true
    }

    static func refused(_ err: Int32, _ target: String) -> AtollError {
        AtollError(.unavailable, "connect(\(target)): \(SystemError.describe(err))", cause: SystemCallError(call: "connect", path: target, errno: err))
    }
}
