public import AtollCore
import CRuntime

/// One message of the sandbox agent's protocol (`CRuntime/include/atoll_agent.h`): a kind, some
/// 64-bit numbers and some strings. What arrives from a sandbox is untrusted: `decode` checks
/// every count and length before it reads anything, and refuses what does not add up.
public struct AgentMessage: Sendable, Equatable {
    public var kind: Kind
    public var numbers: [Int64]
    public var strings: [String]

    public init(_ kind: Kind, numbers: [Int64] = [], strings: [String] = []) {
        self.kind = kind
        self.numbers = numbers
        self.strings = strings
    }

    /// The message kinds, as numbered in `atoll_agent.h`.
    public struct Kind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        init(_ value: atoll_agent_kind) { rawValue = UInt16(value.rawValue) }

        public static let exec = Kind(ATOLL_AGENT_EXEC)
        public static let file = Kind(ATOLL_AGENT_FILE)
        public static let signal = Kind(ATOLL_AGENT_SIGNAL)
        public static let commit = Kind(ATOLL_AGENT_COMMIT)
        public static let error = Kind(ATOLL_AGENT_ERROR)
        public static let started = Kind(ATOLL_AGENT_STARTED)
        public static let exit = Kind(ATOLL_AGENT_EXIT)
        public static let entry = Kind(ATOLL_AGENT_ENTRY)
        public static let match = Kind(ATOLL_AGENT_MATCH)
        public static let path = Kind(ATOLL_AGENT_PATH)
        public static let done = Kind(ATOLL_AGENT_DONE)
        public static let account = Kind(ATOLL_AGENT_ACCOUNT)

        public var description: String {
            switch self {
            case .exec: return "exec"
            case .file: return "file"
            case .signal: return "signal"
            case .commit: return "commit"
            case .error: return "error"
            case .started: return "started"
            case .exit: return "exit"
            case .entry: return "entry"
            case .match: return "match"
            case .path: return "path"
            case .done: return "done"
            case .account: return "account"
            default: return "kind \(rawValue)"
            }
        }
    }

    static let headerSize = MemoryLayout<atoll_agent_header>.size
    public static let maximumSize = Int(ATOLL_AGENT_MESSAGE_MAX)

    /// The packet: header, numbers (little-endian), NUL-terminated strings. Throws if a string
    /// holds a NUL byte or the whole exceeds the protocol's maximum.
    public func encode() throws(AtollError) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(numbers.count * 8 + strings.reduce(0) { $0 + $1.utf8.count + 1 })
        for number in numbers {
            withUnsafeBytes(of: number.littleEndian) { body.append(contentsOf: $0) }
        }
        for string in strings {
            let bytes = Array(string.utf8)
            guard !bytes.contains(0) else { throw AtollError(.invalidArgument, "a string sent to the sandbox contains a NUL byte") }
            body.append(contentsOf: bytes)
            body.append(0)
        }
        let length = Self.headerSize + body.count
        guard length <= Self.maximumSize, numbers.count <= Int(UInt16.max) else {
            throw AtollError(
                .invalidArgument, "the request is \(length) bytes; the sandbox agent takes at most \(Self.maximumSize) (argv and environment included)")
        }
        var packet: [UInt8] = []
        packet.reserveCapacity(length)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { packet.append(contentsOf: $0) } }
        append(ATOLL_AGENT_MAGIC)
        append(kind.rawValue)
        append(UInt16(numbers.count))
        append(UInt32(strings.count))
        append(UInt32(length))
        packet.append(contentsOf: body)
        return packet
    }

    /// Parses one packet; every inconsistency is an error naming it.
    public static func decode(_ bytes: [UInt8]) throws(AtollError) -> AgentMessage {
        func bad(_ why: String) -> AtollError { AtollError(.internal, "malformed message from the sandbox agent: \(why)") }
        guard bytes.count >= headerSize else { throw bad("\(bytes.count) bytes is shorter than a header") }
        func read<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
            var value: T = 0
            withUnsafeMutableBytes(of: &value) { target in
                for i in 0..<MemoryLayout<T>.size { target[i] = bytes[offset + i] }
            }
            return T(littleEndian: value)
        }
        guard read(UInt32.self, at: 0) == ATOLL_AGENT_MAGIC else { throw bad("wrong magic (another protocol version?)") }
        let kind = Kind(rawValue: read(UInt16.self, at: 4))
        let numberCount = Int(read(UInt16.self, at: 6))
        let stringCount = Int(read(UInt32.self, at: 8))
        let length = Int(read(UInt32.self, at: 12))
        guard length == bytes.count else { throw bad("length \(length) but \(bytes.count) bytes arrived") }
        let stringsStart = headerSize + numberCount * 8
        guard stringsStart <= length else { throw bad("\(numberCount) numbers do not fit in \(length) bytes") }
        guard stringCount <= length - stringsStart else { throw bad("\(stringCount) strings do not fit in \(length) bytes") }
        var numbers: [Int64] = []
        numbers.reserveCapacity(numberCount)
        for i in 0..<numberCount { numbers.append(read(Int64.self, at: headerSize + i * 8)) }
        var strings: [String] = []
        strings.reserveCapacity(stringCount)
        var position = stringsStart
        for _ in 0..<stringCount {
            guard let end = bytes[position...].firstIndex(of: 0) else { throw bad("a string is not terminated") }
            strings.append(String(decoding: bytes[position..<end], as: UTF8.self))
            position = end + 1
        }
        guard position == length else { throw bad("\(length - position) bytes follow the last string") }
        return AgentMessage(kind, numbers: numbers, strings: strings)
    }

    public func number(_ index: Int) -> Int64 { index < numbers.count ? numbers[index] : 0 }

    /// For an `EXIT` message (PID 1 reaped the agent): how it ended, e.g. "it was killed by signal 9".
    public var endDescription: String {
        number(0) == 1 ? "it exited with status \(number(1))" : "it was killed by signal \(number(1))"
    }
    public func string(_ index: Int) -> String { index < strings.count ? strings[index] : "" }
}
