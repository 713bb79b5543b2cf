/// The code-execution languages of a sandbox, as Daytona's `code-toolbox-language` label names them.
public enum Language: String, Sendable, Codable, CaseIterable {
    case python
    case typescript
    case javascript

    /// The label the Daytona SDK stores the language in.
    public static let labelKey = "code-toolbox-language"

    /// Python, as in Daytona.
    public static let `default` = Language.python

    /// Parses a language name; the error lists the accepted values.
    public init(parsing name: String) throws(AtollError) {
        guard let value = Language(rawValue: name.lowercased()) else {
            throw AtollError(
                .invalidArgument,
                "unknown language \"\(name)\": expected one of \(Language.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self = value
    }

    /// The language a file name implies by its extension (`.py`, `.ts`/`.mts`/`.cts`, `.js`/`.mjs`/`.cjs`).
    public static func forFileName(_ name: String) -> Language? {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        switch name[name.index(after: dot)...].lowercased() {
        case "py": return .python
        case "ts", "mts", "cts": return .typescript
        case "js", "mjs", "cjs": return .javascript
        default: return nil
        }
    }

    /// The file extension used for a program in this language.
    public var fileExtension: String {
        switch self {
        case .python: return "py"
        case .typescript: return "ts"
        case .javascript: return "js"
        }
    }
}
