public import AtollCore
import Foundation

/// A parsed Dockerfile: stages of instructions, with line continuations joined, comments and
/// parser directives dropped, and `ARG` values before the first `FROM` substituted into `FROM`.
public struct Dockerfile: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        /// The base (an image reference, `scratch`, or an earlier stage's name).
        public var base: String
        public var alias: String?
        public var instructions: [Instruction]
    }

    /// One instruction; `line` is where it starts (1-based), for error messages.
    public struct Instruction: Sendable, Equatable {
        public var keyword: String
        /// What follows the keyword (flags included), continuations joined.
        public var arguments: String
        public var line: Int

        public init(keyword: String, arguments: String, line: Int) {
            self.keyword = keyword
            self.arguments = arguments
            self.line = line
        }

        /// `--name=value` flags in front of the arguments, and the rest.
        public func flags() -> (flags: [String: String], rest: String) {
            var flags: [String: String] = [:]
            var rest = Substring(arguments)
            while rest.hasPrefix("--") {
                let end = rest.firstIndex(where: \.isWhitespace) ?? rest.endIndex
                let flag = rest[rest.index(rest.startIndex, offsetBy: 2)..<end]
                if let equals = flag.firstIndex(of: "=") {
                    flags[String(flag[..<equals])] = String(flag[flag.index(after: equals)...])
                } else {
                    flags[String(flag)] = ""
                }
                rest = rest[end...].drop(while: \.isWhitespace)
            }
            return (flags, String(rest))
        }

        /// The JSON-array form (`["a", "b"]`), if the arguments are one.
        public var jsonArray: [String]? {
            let text = arguments.trimmingSpaces
            guard text.hasPrefix("["), text.hasSuffix("]"), let data = text.data(using: .utf8),
                let array = try? JSONDecoder().decode([String].self, from: data)
            else { return nil }
            return array
        }
    }

    public var stages: [Stage]

    public static let knownInstructions: Set<String> = [
        "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG",
        "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
    ]

    public init(parsing text: String, buildArgs: [String: String] = [:]) throws {
        guard text.utf8.count <= 1 << 20 else { throw AtollError(.invalidArgument, "the Dockerfile is larger than 1 MiB") }
        var logical: [(String, Int)] = []
        var current = ""
        var startLine = 0
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(raw)
            if line.hasSuffix("\r") { line.removeLast() }
            let trimmed = line.trimmingSpaces
            // Comments (and parser directives) are whole lines, also inside a continuation.
            if trimmed.hasPrefix("#") { continue }
            if current.isEmpty {
                if trimmed.isEmpty { continue }
                startLine = index + 1
            }
            if line.hasSuffix("\\") {
                current += String(line.dropLast()) + " "
                continue
            }
            current += line
            logical.append((current.trimmingSpaces, startLine))
            current = ""
        }
        if !current.trimmingSpaces.isEmpty { logical.append((current.trimmingSpaces, startLine)) }

        var stages: [Stage] = []
        var globalArgs = buildArgs
        for (text, line) in logical {
            let keywordEnd = text.firstIndex(where: \.isWhitespace) ?? text.endIndex
            let keyword = text[..<keywordEnd].uppercased()
            let arguments = String(text[keywordEnd...]).trimmingSpaces
            guard Self.knownInstructions.contains(keyword) else {
                throw AtollError(.invalidArgument, "Dockerfile line \(line): unknown instruction \(text[..<keywordEnd].prefix(40))")
            }
            let instruction = Instruction(keyword: keyword, arguments: arguments, line: line)
            if keyword == "FROM" {
                let (flags, rest) = instruction.flags()
                if let platform = flags["platform"], platform != "linux/amd64" {
                    throw AtollError(.invalidArgument, "Dockerfile line \(line): platform \(platform) is not linux/amd64")
                }
                let words = Self.substitute(rest, globalArgs).split(whereSeparator: \.isWhitespace).map(String.init)
                guard words.count == 1 || (words.count == 3 && words[1].uppercased() == "AS") else {
                    throw AtollError(.invalidArgument, "Dockerfile line \(line): FROM takes an image and optionally AS name")
                }
                stages.append(Stage(base: words[0], alias: words.count == 3 ? words[2].lowercased() : nil, instructions: []))
                continue
            }
            guard !stages.isEmpty else {
                guard keyword == "ARG" else {
                    throw AtollError(.invalidArgument, "Dockerfile line \(line): \(keyword) before the first FROM (only ARG may come first)")
                }
                let (name, value) = Self.splitArg(arguments)
                if globalArgs[name] == nil, let value { globalArgs[name] = value }
                continue
            }
            stages[stages.count - 1].instructions.append(instruction)
        }
        guard !stages.isEmpty else { throw AtollError(.invalidArgument, "the Dockerfile has no FROM instruction") }
        self.stages = stages
    }

    static func splitArg(_ text: String) -> (String, String?) {
        guard let equals = text.firstIndex(of: "=") else { return (text.trimmingSpaces, nil) }
        return (String(text[..<equals]).trimmingSpaces, Self.unquote(String(text[text.index(after: equals)...]).trimmingSpaces))
    }

    /// `$NAME` and `${NAME}` (and `${NAME:-default}`) replaced from `values`; unknown names become "".
    public static func substitute(_ text: String, _ values: [String: String]) -> String {
        var out = ""
        var index = text.startIndex
        while index < text.endIndex {
            let c = text[index]
            if c == "\\", text.index(after: index) < text.endIndex, text[text.index(after: index)] == "$" {
                out.append("$")
                index = text.index(index, offsetBy: 2)
                continue
            }
            guard c == "$" else {
                out.append(c)
                index = text.index(after: index)
                continue
            }
            let next = text.index(after: index)
            if next < text.endIndex, text[next] == "{", let close = text[next...].firstIndex(of: "}") {
                let inner = String(text[text.index(after: next)..<close])
                if let dash = inner.range(of: ":-") {
                    let value = values[String(inner[..<dash.lowerBound])] ?? ""
                    out += value.isEmpty ? String(inner[dash.upperBound...]) : value
                } else {
                    out += values[inner] ?? ""
                }
                index = text.index(after: close)
            } else {
                let end = text[next...].firstIndex { !($0.isLetter || $0.isNumber || $0 == "_") } ?? text.endIndex
                if end == next {
                    out.append("$")
                } else {
                    out += values[String(text[next..<end])] ?? ""
                }
                index = end
            }
        }
        return out
    }

    /// `KEY=VALUE` pairs as ENV and LABEL write them (shell-quoted values), or the legacy
    /// `ENV KEY value with spaces` form.
    public static func pairs(_ text: String, line: Int, keyword: String) throws -> [(String, String)] {
        let words = try shellWords(text, line: line)
        guard let first = words.first else { throw AtollError(.invalidArgument, "Dockerfile line \(line): \(keyword) needs KEY=VALUE") }
        if !first.contains("=") {
            guard let space = text.trimmingSpaces.firstIndex(where: \.isWhitespace) else {
                throw AtollError(.invalidArgument, "Dockerfile line \(line): \(keyword) \(first) has no value")
            }
            let trimmed = text.trimmingSpaces
            return [(first, String(trimmed[space...]).trimmingSpaces)]
        }
        return try words.map { word in
            guard let equals = word.firstIndex(of: "="), equals != word.startIndex else {
                throw AtollError(.invalidArgument, "Dockerfile line \(line): \(keyword) expects KEY=VALUE, got \(word.prefix(60))")
            }
            return (String(word[..<equals]), String(word[word.index(after: equals)...]))
        }
    }

    /// Words split as a POSIX shell would (single and double quotes, backslash escapes).
    public static func shellWords(_ text: String, line: Int) throws -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quote: Character?
        var index = text.startIndex
        while index < text.endIndex {
            let c = text[index]
            index = text.index(after: index)
            if let q = quote {
                if c == q {
                    quote = nil
                } else if c == "\\" && q == "\"" && index < text.endIndex {
                    word.append(text[index])
                    index = text.index(after: index)
                } else {
                    word.append(c)
                }
                continue
            }
            if c == "'" || c == "\"" {
                quote = c
                inWord = true
            } else if c == "\\" && index < text.endIndex {
                word.append(text[index])
                index = text.index(after: index)
                inWord = true
            } else if c.isWhitespace {
                if inWord { words.append(word) }
                word = ""
                inWord = false
            } else {
                word.append(c)
                inWord = true
            }
        }
        guard quote == nil else { throw AtollError(.invalidArgument, "Dockerfile line \(line): unterminated quote") }
        if inWord { words.append(word) }
        return words
    }

    static func unquote(_ text: String) -> String {
        (try? shellWords(text, line: 0))?.joined(separator: " ") ?? text
    }
}
