public import Glibc

/// `address:port` as a `sockaddr_in`, for connect(2) and bind(2).
public enum IPv4SocketAddress {
    /// Calls `body` with a pointer to the socket address of `address` (dotted quad) and `port`
    /// and its length; returns what `body` returns (the syscall's result).
    public static func with<T>(_ address: String, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &sin.sin_addr)
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
