public import AtollCore

/// One entry of a tar stream, with its ustar, GNU long-name and PAX headers merged.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file, hardLink, symlink, directory, characterDevice, blockDevice, fifo
    }

    /// The name as the archive spells it (not yet checked: see `LayerPath`).
    public var name: String
    /// A symlink's target or a hard link's source name.
    public var linkName: String
    public var kind: Kind
    /// Permission bits with setuid, setgid and sticky.
    public var mode: UInt32
    public var uid: Int
    public var gid: Int
    public var size: Int
    /// Seconds since the epoch.
    public var modificationTime: Int
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    public var xattrs: [String: [UInt8]]
    /// A device node's numbers.
    public var deviceMajor = 0
    public var deviceMinor = 0

    public init(
        name: String, linkName: String = "", kind: Kind, mode: UInt32 = 0o644, uid: Int = 0, gid: Int = 0, size: Int = 0,
        modificationTime: Int = 0, xattrs: [String: [UInt8]] = [:]
    ) {
        self.name = name
        self.linkName = linkName
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.modificationTime = modificationTime
        self.xattrs = xattrs
    }
}

/// Reads a tar stream (POSIX ustar, GNU and PAX, as Docker, Go's archive/tar, GNU tar and Python's
/// tarfile write them) one entry at a time from any byte source, with constant memory: entry data
/// is handed out in chunks. What Atoll does not unpack is refused with the entry named (GNU and
/// PAX sparse files, multi-volume archives), never skipped silently.
public final class TarReader {
    /// Fills the buffer with up to its size in bytes; 0 at the end of the stream.
    public typealias Source = (UnsafeMutableRawBufferPointer) throws -> Int

    static let block = 512
    /// The largest GNU long name or PAX header accepted (a header is metadata, not content).
    static let metadataLimit = 1 << 20

    private let source: Source
    private var buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var sourceEnded = false
    /// Data bytes of the current entry not yet handed out, and the padding after them.
    private var remaining = 0
    private var padding = 0
    /// Set once the end-of-archive blocks were seen.
    public private(set) var finished = false

    public init(bufferSize: Int = 1 << 20, source: @escaping Source) {
        self.source = source
        buffer = .allocate(byteCount: max(bufferSize, 4096), alignment: 4096)
    }

    deinit { buffer.deallocate() }

    /// The next entry, or nil at the end of the archive. Data the caller did not read is skipped.
    public func next() throws -> TarEntry? {
        if finished { return nil }
        try skip(remaining + padding)
        remaining = 0
        padding = 0
        var longName: String?
        var longLink: String?
        var pax: [String: [UInt8]] = [:]
        while true {
            guard let header = try readBlock() else {
                // A stream that ends without the two zero blocks is truncated unless nothing began.
                if longName != nil || longLink != nil || !pax.isEmpty {
                    throw AtollError(.invalidArgument, "the tar stream ends inside an entry's headers")
                }
                finished = true
                return nil
            }
            if header.allSatisfy({ $0 == 0 }) {
                finished = true
                return nil
            }
            try Self.verifyChecksum(header)
            let type = header[156]
            let size = try Self.number(header[124..<136], field: "size")
            switch type {
            case UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g"):
                guard size <= Self.metadataLimit else {
                    throw AtollError(.invalidArgument, "a tar metadata header of \(size) bytes is larger than the \(Self.metadataLimit) accepted")
                }
                let data = try readWhole(size)
                switch type {
                case UInt8(ascii: "L"): longName = Self.string(data[...])
                case UInt8(ascii: "K"): longLink = Self.string(data[...])
                case UInt8(ascii: "x"): pax.merge(try Self.paxRecords(data)) { $1 }
                default: break  // global PAX headers carry nothing Atoll applies
                }
                continue
            default:
                var entry = try Self.entry(header, size: size)
                if let longName { entry.name = longName }
                if let longLink { entry.linkName = longLink }
                try Self.apply(pax, to: &entry)
                remaining = entry.kind == .file ? entry.size : 0
                // Hard links, symlinks, directories and devices carry no data, whatever size they claim.
                let stored = entry.kind == .file ? entry.size : 0
                padding = (Self.block - stored % Self.block) % Self.block
                return entry
            }
        }
    }

    /// Hands the current entry's data to `body` in chunks, in order.
    public func readData(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        while remaining > 0 {
            if start == end { try fill() }
            guard start < end else { throw AtollError(.invalidArgument, "the tar stream ends inside an entry's data") }
            let n = min(remaining, end - start)
            try body(UnsafeRawBufferPointer(rebasing: buffer[start..<start + n]))
            start += n
            remaining -= n
        }
    }

    /// Reads what follows the end-of-archive blocks (the layer digest covers the whole stream).
    public func drain() throws {
        while true {
            start = end
            try fill()
            if start == end { return }
        }
    }

    // MARK: - Reading

    private func fill() throws {
        if sourceEnded { return }
        if start == end {
            start = 0
            end = 0
        } else if start > 0 {
            let count = end - start
            buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: count)
            start = 0
            end = count
        }
        let n = try source(UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
        if n == 0 { sourceEnded = true }
        end += n
    }

    private func readBlock() throws -> [UInt8]? {
        while end - start < Self.block {
            let before = end - start
            try fill()
            if end - start == before {
                if before == 0 { return nil }
                throw AtollError(.invalidArgument, "the tar stream ends inside a header block")
            }
        }
        let header = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[start..<start + Self.block]))
        start += Self.block
        return header
    }

    private func readWhole(_ size: Int) throws -> [UInt8] {
        var data = [UInt8]()
        data.reserveCapacity(size)
        remaining = size
        try readData { data.append(contentsOf: $0) }
        try skip((Self.block - size % Self.block) % Self.block)
        return data
    }

    private func skip(_ count: Int) throws {
        var left = count
        while left > 0 {
            if start == end { try fill() }
            guard start < end else { throw AtollError(.invalidArgument, "the tar stream ends inside an entry's data") }
            let n = min(left, end - start)
            start += n
            left -= n
        }
    }

    // MARK: - Header fields

    static func verifyChecksum(_ header: [UInt8]) throws {
        let stored = try number(header[148..<156], field: "checksum")
        var sum = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : Int(byte) }
        guard sum == stored else {
            throw AtollError(.invalidArgument, "a tar header's checksum is wrong (stored \(stored), computed \(sum)): not a tar stream, or a corrupt one")
        }
    }

    /// An octal field (NUL- or space-terminated), or GNU's base-256 form for large values.
    static func number(_ field: ArraySlice<UInt8>, field name: String) throws -> Int {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            guard first & 0x40 == 0 else { throw AtollError(.invalidArgument, "a tar header's \(name) is negative") }
            var value = Int(first & 0x3f)
            for byte in field.dropFirst() {
                guard value < (Int.max >> 8) else { throw AtollError(.invalidArgument, "a tar header's \(name) is too large") }
                value = value << 8 | Int(byte)
            }
            return value
        }
        var value = 0
        var seenDigit = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value < (Int.max >> 3) else { throw AtollError(.invalidArgument, "a tar header's \(name) is too large") }
                value = value << 3 | Int(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " "), 0:
                if seenDigit { return value }
            default:
                throw AtollError(.invalidArgument, "a tar header's \(name) field is not an octal number")
            }
        }
        return value
    }

    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    static func entry(_ header: [UInt8], size: Int) throws -> TarEntry {
        var name = string(header[0..<100])
        let ustar = header[257..<262].elementsEqual("ustar".utf8)
        // POSIX ustar splits long names into prefix/name; GNU's "ustar  " header uses those bytes
        // for times instead.
        let posix = ustar && header[262] == 0
        if posix {
            let prefix = string(header[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        let kind: TarEntry.Kind
        switch header[156] {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = name.hasSuffix("/") ? .directory : .file
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symlink
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        case UInt8(ascii: "S"):
            throw AtollError(.invalidArgument, "tar entry \"\(name.prefix(200))\" is a GNU sparse file, which Atoll does not unpack")
        case UInt8(ascii: "M"), UInt8(ascii: "V"):
            throw AtollError(.invalidArgument, "tar entry \"\(name.prefix(200))\" belongs to a multi-volume archive, which Atoll does not unpack")
        case let other:
            throw AtollError(.invalidArgument, "tar entry \"\(name.prefix(200))\" has type '\(Character(UnicodeScalar(other)))', which Atoll does not know")
        }
        var entry = TarEntry(
            name: name, linkName: string(header[157..<257]), kind: kind,
            mode: UInt32(truncatingIfNeeded: try number(header[100..<108], field: "mode")) & 0o7777,
            uid: try number(header[108..<116], field: "uid"), gid: try number(header[116..<124], field: "gid"), size: size,
            modificationTime: try number(header[136..<148], field: "mtime"))
        if kind == .characterDevice || kind == .blockDevice {
            entry.deviceMajor = try number(header[329..<337], field: "devmajor")
            entry.deviceMinor = try number(header[337..<345], field: "devminor")
        }
        return entry
    }

    /// PAX extended header records: `"<length> <key>=<value>\n"`, repeated.
    static func paxRecords(_ data: [UInt8]) throws -> [String: [UInt8]] {
        var records: [String: [UInt8]] = [:]
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: data[index..<space], as: UTF8.self)), length > space - index,
                index + length <= data.count, data[index + length - 1] == UInt8(ascii: "\n"),
                let equals = data[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "="))
            else {
                throw AtollError(.invalidArgument, "a PAX extended header is malformed")
            }
            let key = String(decoding: data[(space + 1)..<equals], as: UTF8.self)
            records[key] = Array(data[(equals + 1)..<(index + length - 1)])
            index += length
        }
        return records
    }

    static func apply(_ pax: [String: [UInt8]], to entry: inout TarEntry) throws {
        func text(_ key: String) -> String? { pax[key].map { String(decoding: $0, as: UTF8.self) } }
        func integer(_ key: String) throws -> Int? {
            guard let value = text(key) else { return nil }
            // mtime may carry a fraction of a second: Atoll keeps whole seconds.
            guard let whole = Int(value.split(separator: ".", maxSplits: 1).first ?? ""), whole >= 0 else {
                throw AtollError(.invalidArgument, "tar entry \"\(entry.name.prefix(200))\": PAX \(key) \"\(value.prefix(40))\" is not a number")
            }
            return whole
        }
        if let path = text("path") { entry.name = path }
        if let link = text("linkpath") { entry.linkName = link }
        if let size = try integer("size") { entry.size = size }
        if let uid = try integer("uid") { entry.uid = uid }
        if let gid = try integer("gid") { entry.gid = gid }
        if let mtime = try integer("mtime") { entry.modificationTime = mtime }
        if pax.keys.contains(where: { $0.hasPrefix("GNU.sparse.") }) {
            throw AtollError(.invalidArgument, "tar entry \"\(entry.name.prefix(200))\" is a PAX sparse file, which Atoll does not unpack")
        }
        for (key, value) in pax where key.hasPrefix("SCHILY.xattr.") {
            entry.xattrs[String(key.dropFirst("SCHILY.xattr.".count))] = value
        }
    }
}
