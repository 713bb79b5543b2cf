public import Foundation
import Glibc

/// multipart/form-data (RFC 7578) as the SDK's file transfers use it.
public enum Multipart {
    public struct Part: Sendable {
        public var name: String
        public var filename: String?
        public var body: Data

        public init(name: String, filename: String?, body: Data) {
            self.name = name
            self.filename = filename
            self.body = body
        }
    }

    /// The boundary of a `multipart/form-data; boundary=…` content type.
    public static func boundary(contentType: String?) throws(MultipartError) -> String {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else {
            throw MultipartError("expected a multipart/form-data body")
        }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let kv = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0].lowercased() == "boundary" {
                let value = kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                if !value.isEmpty && value.count <= 200 { return value }
            }
        }
        throw MultipartError("the multipart body has no boundary")
    }

    /// Splits a body into parts; headers are parsed for the Content-Disposition name and filename.
    public static func parse(_ body: Data, boundary: String) throws(MultipartError) -> [Part] {
        let delimiter = Data("--\(boundary)".utf8)
        let bytes = body
        var parts: [Part] = []
        guard var start = bytes.range(of: delimiter)?.upperBound else {
            throw MultipartError("malformed multipart body: no boundary found")
        }
        while true {
            // After a delimiter: "--" ends the body, otherwise CRLF and a part follows.
            if bytes[start...].starts(with: Data("--".utf8)) { return parts }
            guard bytes[start...].starts(with: Data("\r\n".utf8)) else { throw MultipartError("malformed multipart body") }
            let headerStart = start + 2
            guard let headerEnd = bytes.range(of: Data("\r\n\r\n".utf8), in: headerStart..<bytes.endIndex) else {
                throw MultipartError("malformed multipart body: a part has no header end")
            }
            let headers = String(decoding: bytes[headerStart..<headerEnd.lowerBound], as: UTF8.self)
            guard let next = bytes.range(of: Data("\r\n--\(boundary)".utf8), in: headerEnd.upperBound..<bytes.endIndex) else {
                throw MultipartError("malformed multipart body: truncated part")
            }
            var name: String?
            var filename: String?
            for line in headers.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
                let params = dispositionParameters(String(line.dropFirst("content-disposition:".count)))
                name = params["name"]
                filename = params["filename*"].flatMap(decodeExtended) ?? params["filename"]
            }
            guard let name else { throw MultipartError("malformed multipart body: a part has no name") }
            parts.append(Part(name: name, filename: filename, body: Data(bytes[headerEnd.upperBound..<next.lowerBound])))
            start = next.upperBound
        }
    }

    /// `form-data; name="a"; filename="b"` → ["name": "a", "filename": "b"].
    static func dispositionParameters(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var rest = Substring(text)
        while let semicolon = rest.firstIndex(of: ";") {
            rest = rest[rest.index(after: semicolon)...].drop { $0 == " " }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var value = rest[rest.index(after: eq)...]
            if value.first == "\"" {
                value = value.dropFirst()
                var unescaped = ""
                var escaped = false
                var end = value.endIndex
                for i in value.indices {
                    let c = value[i]
                    if escaped {
                        unescaped.append(c)
                        escaped = false
                        continue
                    }
                    if c == "\\" {
                        escaped = true
                        continue
                    }
                    if c == "\"" {
                        end = i
                        break
                    }
                    unescaped.append(c)
                }
                result[key] = unescaped
                rest = end < value.endIndex ? value[value.index(after: end)...] : value[value.endIndex...]
            } else {
                let end = value.firstIndex(of: ";") ?? value.endIndex
                result[key] = value[..<end].trimmingCharacters(in: .whitespaces)
                rest = value[end...]
            }
        }
        return result
    }

    /// RFC 5987 `utf-8''percent%20encoded`.
    static func decodeExtended(_ value: String) -> String? {
        guard let quote = value.range(of: "''") else { return nil }
        return String(value[quote.upperBound...]).removingPercentEncoding
    }

    /// A multipart/form-data body built from parts, and its content type.
    public struct Writer: Sendable {
        public let boundary = "ATOLL-FILE-BOUNDARY-" + UUID().uuidString
        var body = Data()

        public init() {}

        public var contentType: String { "multipart/form-data; boundary=\(boundary)" }

        public mutating func add(name: String, filename: String, contentType: String, data: Data) {
            let escaped = filename.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            var header = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(escaped)\""
            if filename.unicodeScalars.contains(where: { !$0.isASCII || $0.value < 32 }) {
                let encoded = filename.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "'%"))) ?? filename
                header += "; filename*=utf-8''\(encoded)"
            }
            header += "\r\nContent-Type: \(contentType)\r\nContent-Length: \(data.count)\r\n\r\n"
            body.append(Data(header.utf8))
            body.append(data)
            body.append(Data("\r\n".utf8))
        }

        /// A plain text field.
        public mutating func addField(name: String, value: String) {
            body.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8))
        }

        public mutating func finish() -> Data {
            body.append(Data("--\(boundary)--\r\n".utf8))
            return body
        }
    }
}

extension Multipart {
    /// What a streaming parse finds, in order: a part begins (its name and filename), some of its
    /// bytes, the part ends.
    public enum Event: Sendable, Equatable {
        case partStart(name: String, filename: String?)
        case data([UInt8])
        case partEnd
    }

    /// multipart/form-data parsed as it arrives, holding no more than one chunk and a delimiter's
    /// length of it: a 1 GiB upload goes through in pieces, never whole in memory.
    public struct StreamParser: Sendable {
        enum State { case preamble, afterDelimiter, headers, body, done }

        let delimiter: [UInt8]  // "--boundary"
        let bodyDelimiter: [UInt8]  // "\r\n--boundary"
        var state = State.preamble
        var pending: [UInt8] = []
        /// Largest header block of one part.
        static let headerLimit = 16 << 10

        public init(boundary: String) {
            delimiter = Array("--\(boundary)".utf8)
            bodyDelimiter = Array("\r\n--\(boundary)".utf8)
        }

        /// Whether the closing delimiter has been seen.
        public var isComplete: Bool { state == .done }

        /// Feeds the next bytes of the body; returns what they completed.
        public mutating func feed(_ bytes: [UInt8]) throws(MultipartError) -> [Event] {
            guard state != .done else { return [] }
            pending.append(contentsOf: bytes)
            var events: [Event] = []
            var position = 0
            loop: while true {
                switch state {
                case .preamble:
                    guard let found = Self.search(pending, delimiter, from: position) else {
                        position = max(position, pending.count - delimiter.count)
                        break loop
                    }
                    position = found + delimiter.count
                    state = .afterDelimiter
                case .afterDelimiter:
                    guard pending.count - position >= 2 else { break loop }
                    if pending[position] == 45 && pending[position + 1] == 45 {  // "--": the end
                        state = .done
                        pending = []
                        return events
                    }
                    guard pending[position] == 13 && pending[position + 1] == 10 else {
                        throw MultipartError("malformed multipart body: a delimiter is followed by neither CRLF nor --")
                    }
                    position += 2
                    state = .headers
                case .headers:
                    guard let end = Self.search(pending, [13, 10, 13, 10], from: position) else {
                        if pending.count - position > Self.headerLimit { throw MultipartError("malformed multipart body: a part's headers exceed 16 KiB") }
                        break loop
                    }
                    let headers = String(decoding: pending[position..<end], as: UTF8.self)
                    var name: String?
                    var filename: String?
                    for line in headers.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
                        let params = Multipart.dispositionParameters(String(line.dropFirst("content-disposition:".count)))
                        name = params["name"]
                        filename = params["filename*"].flatMap(Multipart.decodeExtended) ?? params["filename"]
                    }
                    guard let name else { throw MultipartError("malformed multipart body: a part has no name") }
                    events.append(.partStart(name: name, filename: filename))
                    position = end + 4
                    state = .body
                case .body:
                    if let found = Self.search(pending, bodyDelimiter, from: position) {
                        if found > position { events.append(.data(Array(pending[position..<found]))) }
                        events.append(.partEnd)
                        position = found + bodyDelimiter.count
                        state = .afterDelimiter
                    } else {
                        // Everything but a possible start of the delimiter is the part's.
                        let safe = max(position, pending.count - bodyDelimiter.count + 1)
                        if safe > position { events.append(.data(Array(pending[position..<safe]))) }
                        position = safe
                        break loop
                    }
                case .done:
                    break loop
                }
            }
            pending.removeFirst(position)
            return events
        }

        /// Throws unless the body ended with its closing delimiter.
        public func finish() throws(MultipartError) {
            guard state == .done else { throw MultipartError("malformed multipart body: it ends before its closing boundary") }
        }

        static func search(_ haystack: [UInt8], _ needle: [UInt8], from start: Int) -> Int? {
            guard needle.count > 0, haystack.count - start >= needle.count else { return nil }
            let first = needle[0]
            var i = start
            let last = haystack.count - needle.count
            return haystack.withUnsafeBufferPointer { h -> Int? in
                while i <= last {
                    guard let p = memchr(h.baseAddress! + i, Int32(first), last - i + 1) else { return nil }
                    let at = h.baseAddress!.distance(to: p.assumingMemoryBound(to: UInt8.self))
                    if memcmp(h.baseAddress! + at, needle, needle.count) == 0 { return at }
                    i = at + 1
                }
                return nil
            }
        }
    }

    /// Pieces of a multipart/form-data body written as it streams: `header` before each part's
    /// bytes, `separator` after them, `closing` at the end.
    public struct StreamWriter: Sendable {
        public let boundary = "ATOLL-FILE-BOUNDARY-" + UUID().uuidString

        public init() {}

        public var contentType: String { "multipart/form-data; boundary=\(boundary)" }

        public func header(name: String, filename: String, contentType: String, length: Int? = nil) -> [UInt8] {
            let escaped = filename.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
            var header = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(escaped)\""
            if filename.unicodeScalars.contains(where: { !$0.isASCII || $0.value < 32 }) {
                let encoded = filename.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "'%"))) ?? filename
                header += "; filename*=utf-8''\(encoded)"
            }
            header += "\r\nContent-Type: \(contentType)\r\n"
            if let length { header += "Content-Length: \(length)\r\n" }
            return Array((header + "\r\n").utf8)
        }

        public var separator: [UInt8] { [13, 10] }
        public var closing: [UInt8] { Array("--\(boundary)--\r\n".utf8) }
    }
}

/// A malformed multipart body or content type; the message says what is wrong.
public struct MultipartError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
