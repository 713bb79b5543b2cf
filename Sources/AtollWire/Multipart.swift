import Foundation

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
                    if escaped { unescaped.append(c); escaped = false; continue }
                    if c == "\\" { escaped = true; continue }
                    if c == "\"" { end = i; break }
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

/// A malformed multipart body or content type; the message says what is wrong.
public struct MultipartError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
