public import AtollCore

/// An image reference as Docker reads it: `python:3.12` is `docker.io/library/python:3.12`,
/// `127.0.0.1:5000/tools/x@sha256:…` names a registry (it has a `.` or `:` or is `localhost`).
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    public static let defaultRegistry = "docker.io"

    public init(_ text: String) throws {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty, trimmed.utf8.count <= 512 else {
            throw AtollError(.invalidArgument, "invalid image reference \"\(text.prefix(80))\": empty or longer than 512 bytes")
        }
        var rest = Substring(trimmed)
        if let at = rest.firstIndex(of: "@") {
            let digest = String(rest[rest.index(after: at)...])
            guard Self.isDigest(digest) else {
                throw AtollError(.invalidArgument, "invalid image reference \"\(text.prefix(80))\": the digest must be sha256:<64 hex digits>")
            }
            self.digest = digest
            rest = rest[..<at]
        }
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let tag = String(rest[rest.index(after: colon)...])
            guard Self.isTag(tag) else {
                throw AtollError(
                    .invalidArgument, "invalid image reference \"\(text.prefix(80))\": tag \"\(tag.prefix(40))\" is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
            }
            self.tag = tag
            rest = rest[..<colon]
        }
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            registry = parts.removeFirst()
        } else {
            registry = Self.defaultRegistry
        }
        if registry == "index.docker.io" || registry == "registry-1.docker.io" { registry = Self.defaultRegistry }
        if registry == Self.defaultRegistry && parts.count == 1 { parts.insert("library", at: 0) }
        guard !parts.isEmpty, parts.allSatisfy(Self.isPathComponent) else {
            throw AtollError(
                .invalidArgument,
                "invalid image reference \"\(text.prefix(80))\": repository names are lower-case [a-z0-9] separated by '.', '_', '__' or '-', joined by '/'")
        }
        guard Self.isRegistry(registry) else {
            throw AtollError(.invalidArgument, "invalid image reference \"\(text.prefix(80))\": bad registry host \"\(registry.prefix(80))\"")
        }
        repository = parts.joined(separator: "/")
        if tag == nil && digest == nil { tag = "latest" }
    }

    /// `registry/repository[:tag][@digest]`, the form the store records.
    public var description: String {
        "\(registry)/\(repository)\(tag.map { ":\($0)" } ?? "")\(digest.map { "@\($0)" } ?? "")"
    }

    static func isDigest(_ text: String) -> Bool {
        text.hasPrefix("sha256:") && text.utf8.count == 71 && text.utf8.dropFirst(7).allSatisfy { Self.isHex($0) }
    }

    static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    static func isTag(_ text: String) -> Bool {
        guard let first = text.utf8.first, text.utf8.count <= 128 else { return false }
        func word(_ b: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: "_")
        }
        return word(first) && text.utf8.allSatisfy { word($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    static func isPathComponent(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last, bytes.count <= 128 else { return false }
        func alnum(_ b: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
        }
        guard alnum(first), alnum(last) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
            && !text.contains("..")
    }

    static func isRegistry(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 255
            && text.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
                    || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]")
            }
    }
}

extension String {
    var trimmingSpaces: String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
