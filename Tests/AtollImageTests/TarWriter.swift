import Foundation

/// Writes tar streams for the tests, including the malformed and hostile ones no real tool
/// writes: ustar headers, PAX records (long names, xattrs), GNU long names.
struct TarWriter {
    private(set) var data = Data()

    enum Kind: UInt8 {
        case file = 0x30
        case hardLink = 0x31
        case symlink = 0x32
        case character = 0x33
        case block = 0x34
        case directory = 0x35
        case fifo = 0x36
        case pax = 0x78
        case gnuLongName = 0x4c
    }

    mutating func add(
        _ name: String, kind: Kind = .file, content: [UInt8] = [], link: String = "", mode: Int = 0o644, uid: Int = 0, gid: Int = 0,
        xattrs: [String: String] = [:], size: Int? = nil
    ) {
        var storedName = name
        if !xattrs.isEmpty || name.utf8.count > 99 {
            var records = ""
            func record(_ key: String, _ value: String) {
                let body = " \(key)=\(value)\n"
                var length = body.utf8.count + 1
                while "\(length)\(body)".utf8.count != length { length += 1 }
                records += "\(length)\(body)"
            }
            if name.utf8.count > 99 { record("path", name) }
            for (key, value) in xattrs.sorted(by: { $0.key < $1.key }) { record("SCHILY.xattr.\(key)", value) }
            appendEntry("PaxHeader", kind: .pax, content: Array(records.utf8), link: "", mode: 0o644, uid: 0, gid: 0, size: nil)
            storedName = String(name.prefix(99))
        }
        appendEntry(storedName, kind: kind, content: content, link: link, mode: mode, uid: uid, gid: gid, size: size)
    }

    mutating func addGNULongName(_ name: String, content: [UInt8]) {
        appendEntry("././@LongLink", kind: .gnuLongName, content: Array(name.utf8) + [0], link: "", mode: 0o644, uid: 0, gid: 0, size: nil)
        appendEntry(String(name.prefix(99)), kind: .file, content: content, link: "", mode: 0o644, uid: 0, gid: 0, size: nil)
    }

    mutating func finish() { data.append(Data(count: 1024)) }

    /// The stream with its checksum field overwritten in the first header.
    mutating func corruptFirstChecksum() { data[148] = UInt8(ascii: "7") }

    private mutating func appendEntry(
        _ name: String, kind: Kind, content: [UInt8], link: String, mode: Int, uid: Int, gid: Int, size: Int?
    ) {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, length: Int) {
            for (index, byte) in text.utf8.prefix(length).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, length: Int) {
            put(String(repeating: "0", count: max(0, length - 1 - String(value, radix: 8).count)) + String(value, radix: 8), at: offset, length: length - 1)
        }
        put(name, at: 0, length: 100)
        octal(mode, at: 100, length: 8)
        octal(uid, at: 108, length: 8)
        octal(gid, at: 116, length: 8)
        octal(size ?? content.count, at: 124, length: 12)
        octal(1_700_000_000, at: 136, length: 12)
        header[156] = kind.rawValue
        put(link, at: 157, length: 100)
        put("ustar", at: 257, length: 6)
        put("00", at: 263, length: 2)
        for index in 148..<156 { header[index] = 32 }
        let sum = header.reduce(0) { $0 + Int($1) }
        put(String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8), at: 148, length: 6)
        header[154] = 0
        data.append(contentsOf: header)
        data.append(contentsOf: content)
        data.append(Data(count: (512 - content.count % 512) % 512))
    }
}
