import AtollCore
public import AtollLinux
public import AtollSandbox
import Foundation
import Glibc
import Testing

/// Network namespaces the tests make for themselves. A test runner's "host" is one of these, so
/// bridges, links, nftables tables and IPv4 forwarding are only ever changed inside namespaces a
/// test created. A namespace is held by an fd of this process: it disappears with everything in
/// it when released, and at the latest when the test process exits (even if it crashes).
public enum TestHostNamespace {
    nonisolated(unsafe) static var held: [String: OwnedFD] = [:]
    static let lock = NSLock()

    /// Network settings for a runner on `dataDirectory`, in a new namespace of its own (only
    /// when privileged tests run; otherwise nothing is made and the driver is never opened).
    public static func settings(for dataDirectory: String) throws -> NetworkSettings {
        let subnet = try SandboxSubnet(parsing: NetworkSettings.defaultSubnet)
        guard TestEnvironment.runPrivileged, TestEnvironment.isRoot else { return try NetworkSettings(subnet: subnet, namespacePath: "/nonexistent") }
        let namespace = try HostNetwork.makeNamespace()
        let path = "/proc/\(getpid())/fd/\(namespace.raw)"
        lock.withLock { held[dataDirectory] = namespace }
        return try NetworkSettings(subnet: subnet, namespacePath: path)
    }

    /// Closes the namespace of the runner on `dataDirectory`.
    public static func release(for dataDirectory: String) {
        let namespace = lock.withLock { held.removeValue(forKey: dataDirectory) }
        namespace?.close()
    }
}

/// A test's own small internet: `host` plays the host (give it to a runner as its network
/// namespace), `outside` is a remote network reachable only through the host's uplink veth.
///
///     host (uplink 198.51.100.1/24, default route) ── outside (198.51.100.2/24, 203.0.113.10/32)
///
/// Traffic never leaves these namespaces. Everything is removed by `close()`.
public final class TestInternet: @unchecked Sendable {
    public let host: OwnedFD
    public let outside: OwnedFD
    public static let uplinkAddress = "198.51.100.1"
    public static let outsideAddress = "198.51.100.2"
    /// A server address behind the outside router (on its loopback).
    public static let serverAddress = "203.0.113.10"

    public var hostPath: String { "/proc/\(getpid())/fd/\(host.raw)" }
    public var outsidePath: String { "/proc/\(getpid())/fd/\(outside.raw)" }

    public init() throws {
        host = try HostNetwork.makeNamespace()
        outside = try HostNetwork.makeNamespace()
        try ip(host: true, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", outsidePath)
        try ip(host: true, "addr", "add", "\(Self.uplinkAddress)/24", "dev", "uplink")
        try ip(host: true, "link", "set", "uplink", "up")
        try ip(host: true, "route", "add", "default", "via", Self.outsideAddress)
        try ip(host: false, "addr", "add", "\(Self.outsideAddress)/24", "dev", "eth0")
        try ip(host: false, "addr", "add", "\(Self.serverAddress)/32", "dev", "lo")
        try ip(host: false, "link", "set", "eth0", "up")
    }

    public func close() {
        host.close()
        outside.close()
    }

    /// `ip` in one of the namespaces (test setup only; the runtime itself uses netlink).
    public func ip(host inHost: Bool, _ arguments: String...) throws {
        try HostCommand.run(
            try HostCommand.locate("nsenter", package: "util-linux"),
            ["--net=\(inHost ? hostPath : outsidePath)", try HostCommand.locate("ip", package: "iproute2")] + arguments)
    }

    /// Runs a command in a namespace and returns its output.
    public func run(inHost: Bool, _ executable: String, _ arguments: [String]) throws -> String {
        try HostCommand.run(try HostCommand.locate("nsenter", package: "util-linux"), ["--net=\(inHost ? hostPath : outsidePath)", executable] + arguments)
    }
}

/// A tiny HTTP server on a thread of this process, listening in a namespace of the test's: it
/// answers every request with `200 OK` and "`body` from `client address`", and counts connections.
public final class TestHTTPServer: @unchecked Sendable {
    let socket: Int32
    let counter = NSLock()
    var accepted = 0
    let body: String

    /// Listens on `address`:`port` inside the namespace `namespace`.
    public init(namespace: OwnedFD, address: String, port: UInt16, body: String) throws {
        self.body = body
        let listener = try HostNetwork.socket(in: namespace, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        var one: Int32 = 1
        setsockopt(listener.raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = IPv4SocketAddress.with(address, port) { bind(listener.raw, $0, $1) }
        guard bound == 0, listen(listener.raw, 64) == 0 else { throw SystemError.last("bind/listen", "\(address):\(port)") }
        socket = listener.take()
        Thread { [self] in serve() }.start()
    }

    /// Connections accepted so far.
    public var connections: Int { counter.withLock { accepted } }

    func serve() {
        while true {
            var peer = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let client = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(socket, $0, &length) }
            }
            if client < 0 {
                if errno == EINTR { continue }
                return  // closed
            }
            counter.withLock { accepted += 1 }
            var text = [CChar](repeating: 0, count: 32)
            inet_ntop(AF_INET, &peer.sin_addr, &text, socklen_t(text.count))
            let from = String(cString: text)
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = read(client, &buffer, buffer.count)
            // The reply says who connected, so tests see the source address after NAT.
            let content = "\(body) from \(from)"
            let reply = "HTTP/1.0 200 OK\r\nContent-Length: \(content.utf8.count)\r\nConnection: close\r\n\r\n\(content)"
            _ = reply.withCString { write(client, $0, strlen($0)) }
            Glibc.close(client)
        }
    }

    public func close() {
        shutdown(socket, Int32(SHUT_RDWR))
        Glibc.close(socket)
    }
}
