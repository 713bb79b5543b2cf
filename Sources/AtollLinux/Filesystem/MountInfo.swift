/// One line of `/proc/<pid>/mountinfo`.
public struct MountEntry: Sendable, Hashable {
    public var mountID: Int
    public var parentID: Int
    /// The root of the mount within its filesystem.
    public var root: String
    public var mountPoint: String
    public var options: String
    public var fsType: String
    public var source: String
    public var superOptions: String
}

/// Parser for `/proc/self/mountinfo` (proc(5)): fields are space-separated, paths escape space,
/// tab, newline and backslash as octal (`\040`), and a variable list of optional fields ends at `-`.
public enum MountInfo {
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { parseLine(String($0)) }
    }

    public static func parseLine(_ line: String) -> MountEntry? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 3 < fields.count + 1,
            let id = Int(fields[0]), let parent = Int(fields[1])
        else { return nil }
        let superOptions = dash + 3 < fields.count ? fields[dash + 3] : ""
        return MountEntry(
            mountID: id,
            parentID: parent,
            root: unescape(fields[3]),
            mountPoint: unescape(fields[4]),
            options: fields[5],
            fsType: fields[dash + 1],
            source: unescape(fields[dash + 2]),
            superOptions: superOptions
        )
    }

    /// Reads and parses the mount table of the calling process.
    public static func current() throws -> [MountEntry] {
        parse(try KernelFile.read("/proc/self/mountinfo", limit: 16 << 20))
    }

    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 92, i + 3 < bytes.count,
                let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
