/// A sandbox identifier: lower-case letters, digits and dashes, 1–63 characters, starting with a
/// letter or digit. It doubles as the sandbox's hostname and as a path component on the host, so
/// the rules are those of a DNS label and leave no room for path tricks.
public struct SandboxID: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String

    /// Validates `rawValue`; the error quotes the rejected value.
    public init(_ rawValue: String) throws(AtollError) {
        guard Self.isValid(rawValue) else {
            throw AtollError(
                .invalidArgument,
                "invalid sandbox id \"\(rawValue.prefix(80))\": use 1-63 lower-case letters, digits or '-', starting with a letter or digit"
            )
        }
        self.rawValue = rawValue
    }

    /// A fresh random identifier (a UUID, as Daytona uses).
    public static func random() -> SandboxID {
        var bytes = SecureBytes.random(16)
        bytes[6] = (bytes[6] & 0x0F) | 0x40  // version 4
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        let hex = Hex.string(bytes)
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        // Safe: the generated form always satisfies the rules.
        return try! SandboxID(parts.joined(separator: "-"))
    }

    public static func isValid(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 63 else { return false }
        for (i, c) in s.utf8.enumerated() {
            let isLower = c >= 97 && c <= 122
            let isDigit = c >= 48 && c <= 57
            if i == 0 {
                guard isLower || isDigit else { return false }
            } else {
                guard isLower || isDigit || c == 45 else { return false }
            }
        }
        return true
    }

    public var description: String { rawValue }

    public static func < (lhs: SandboxID, rhs: SandboxID) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        try self.init(value)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
