import AtollCore
import AtollLinux
import Foundation
import Glibc

/// A minimal HTTP/1.1 client on one keep-alive TCP connection (as the SDK's connection pool
/// keeps one), so a figure measures the daemon, not a client library's start-up or TLS.
final class BenchHTTP {
    let host: String
    let port: UInt16
    let key: String
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []

    init(url: String, key: String) throws {
        guard let parsed = URL(string: url), let host = parsed.host, let port = parsed.port else {
            throw AtollError(.invalidArgument, "not an http://HOST:PORT URL: \(url)")
        }
        self.host = host
        self.port = UInt16(port)
        self.key = key
    }

    deinit { if fd >= 0 { close(fd) } }

    private func connect() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.error("socket", host, errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = IPv4SocketAddress.with(host, port) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            let error = errno
            close(fd)
            fd = -1
            throw SystemError.error("connect", "\(host):\(port)", errno: error)
        }
        buffer = []
    }

    /// Sends a request and returns the status and body; reconnects once if the server closed
    /// the idle connection.
    func request(_ method: String, _ path: String, json: String? = nil) throws -> (status: Int, body: [UInt8]) {
        for attempt in 0..<2 {
            if fd < 0 { try connect() }
            do {
                return try exchange(method, path, json: json)
            } catch let error as Closed {
                close(fd)
                fd = -1
                if attempt == 1 { throw AtollError(.unavailable, "\(method) \(path): \(error.reason)") }
            }
        }
        fatalError("unreachable")
    }

    /// The body as JSON; a status other than 200–299 throws with the body's message.
    func json(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
        let (status, bytes) = try request(method, path, json: body)
        let value = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        guard (200..<300).contains(status) else {
            throw AtollError(.system, "\(method) \(path) answered \(status): \(String(decoding: bytes.prefix(300), as: UTF8.self))")
        }
        return value as? [String: Any] ?? ["items": value]
    }

    struct Closed: Error { var reason: String }

    private func exchange(_ method: String, _ path: String, json: String?) throws -> (status: Int, body: [UInt8]) {
        let body = Array((json ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nAuthorization: Bearer \(key)\r\n"
        if json != nil { head += "Content-Type: application/json\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw Closed(reason: "send failed (errno \(errno))") }
            sent += n
        }
        // Status line and headers.
        let headerEnd = try readUntil([13, 10, 13, 10])
        let headerText = String(decoding: buffer[..<headerEnd], as: UTF8.self)
        buffer.removeFirst(headerEnd + 4)
        let lines = headerText.split(separator: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw AtollError(.system, "bad HTTP response: \(headerText.prefix(100))")
        }
        var length: Int?
        var chunked = false
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard parts.count == 2 else { continue }
            if parts[0] == "content-length" { length = Int(parts[1]) }
            if parts[0] == "transfer-encoding" && parts[1].contains("chunked") { chunked = true }
        }
        if chunked {
            var out: [UInt8] = []
            while true {
                let end = try readUntil([13, 10])
                let size = Int(String(decoding: buffer[..<end], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
                buffer.removeFirst(end + 2)
                try fill(size + 2)
                out += buffer[..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { return (status, out) }
            }
        }
        let count = length ?? 0
        try fill(count)
        let out = Array(buffer[..<count])
        buffer.removeFirst(count)
        return (status, out)
    }

    private func readMore() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { throw Closed(reason: n == 0 ? "connection closed" : "recv failed (errno \(errno))") }
        buffer += chunk[..<n]
    }

    private func fill(_ count: Int) throws {
        while buffer.count < count { try readMore() }
    }

    private func readUntil(_ marker: [UInt8]) throws -> Int {
        var from = 0
        while true {
            if buffer.count >= marker.count {
                for i in from...(buffer.count - marker.count) where buffer[i..<(i + marker.count)].elementsEqual(marker) { return i }
                from = buffer.count - marker.count + 1
            }
            try readMore()
        }
    }
}
