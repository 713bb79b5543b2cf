import AtollCore
import AtollImage
import AtollTestSupport
import CRuntime
import Foundation
import Glibc
import Testing

/// A reader over bytes in memory, handed out in small reads so entries straddle buffer refills.
func reader(_ data: Data, chunk: Int = 700) -> TarReader {
    var offset = 0
    return TarReader(bufferSize: 4096) { buffer in
        let n = min(chunk, buffer.count, data.count - offset)
        if n > 0 { data.copyBytes(to: buffer.bindMemory(to: UInt8.self), from: offset..<offset + n) }
        offset += n
        return n
    }
}

func entries(_ data: Data) throws -> [TarEntry] {
    let tar = reader(data)
    var result: [TarEntry] = []
    while let entry = try tar.next() { result.append(entry) }
    return result
}

@Suite("tar reader")
struct TarReaderTests {
    @Test("ustar, PAX xattrs and long names, GNU long names are read; data is skipped when unread")
    func readsHeaders() throws {
        var tar = TarWriter()
        let long = String(repeating: "d", count: 120) + "/file"
        tar.add("a/", kind: .directory, mode: 0o755)
        tar.add("a/b.txt", content: Array("hello".utf8), mode: 0o4755, uid: 1000, gid: 1000, xattrs: ["user.note": "v"])
        tar.add(long, content: [1, 2, 3])
        tar.addGNULongName(String(repeating: "g", count: 150), content: Array(repeating: 7, count: 600))
        tar.add("link", kind: .symlink, link: "a/b.txt")
        tar.finish()
        let read = try entries(tar.data)
        #expect(read.map(\.name) == ["a/", "a/b.txt", long, String(repeating: "g", count: 150), "link"])
        #expect(read[1].mode == 0o4755 && read[1].uid == 1000 && read[1].size == 5)
        #expect(read[1].xattrs == ["user.note": Array("v".utf8)])
        #expect(read[3].size == 600)
        #expect(read[4].kind == .symlink && read[4].linkName == "a/b.txt")
    }

    @Test("a bad checksum, a truncated stream and an unknown type are errors that say so")
    func refusesMalformed() throws {
        var bad = TarWriter()
        bad.add("x", content: [1])
        bad.finish()
        bad.corruptFirstChecksum()
        #expect(throws: AtollError.self) { try entries(bad.data) }
        do {
            _ = try entries(bad.data)
        } catch let error as AtollError {
            #expect(error.message.contains("checksum"))
        }

        var truncated = TarWriter()
        truncated.add("x", content: Array(repeating: 1, count: 2000))
        let cut = truncated.data.prefix(1000)
        let tar = reader(Data(cut))
        _ = try tar.next()
        do {
            try tar.readData { _ in }
            Issue.record("a truncated entry was read without an error")
        } catch let error as AtollError {
            #expect(error.message.contains("ends inside an entry's data"))
        }
    }
}

/// Unpacks tars into a fresh directory below a parent that also holds an "outside" directory, to
/// prove hostile entries write nothing outside.
struct Scratch: ~Copyable {
    let base: String
    var root: String { "\(base)/layer" }
    var outside: String { "\(base)/outside" }

    init() throws {
        base = "/tmp/atoll-unpack-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: "\(base)/layer", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(base)/outside", withIntermediateDirectories: true)
    }

    func unpack(_ tar: TarWriter) throws -> UnpackReport {
        let unpacker = try LayerUnpacker(root: root)
        try unpacker.unpack(reader(tar.data))
        return unpacker.report
    }

    /// The error message of an unpack that must fail.
    func refusal(_ tar: TarWriter) -> String {
        do {
            _ = try unpack(tar)
            return "(no error)"
        } catch let error as AtollError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    var outsideIsEmpty: Bool { ((try? FileManager.default.contentsOfDirectory(atPath: outside)) ?? ["?"]).isEmpty }

    deinit { try? FileManager.default.removeItem(atPath: base) }
}

@Suite("layer unpacking (as root: owners, whiteouts, devices)", .serialized)
struct LayerUnpackerTests {
    @Test("files, directories, owners, setuid, xattrs, symlinks, hard links, FIFOs and holes are kept; devices skipped", .privileged)
    func unpacksEverything() throws {
        let scratch = try Scratch()
        var tar = TarWriter()
        tar.add("./", kind: .directory, mode: 0o755)
        tar.add("usr/bin/", kind: .directory, mode: 0o755)
        tar.add("usr/bin/tool", content: Array("#!/bin/sh\n".utf8), mode: 0o4755, uid: 0, gid: 0, xattrs: ["user.origin": "test"])
        tar.add("home/sandbox/notes.txt", content: Array("mine".utf8), mode: 0o600, uid: 1000, gid: 1000)
        tar.add("home/sandbox/same.txt", kind: .hardLink, link: "home/sandbox/notes.txt")
        tar.add("bin", kind: .symlink, link: "usr/bin")
        tar.add("run/fifo", kind: .fifo, mode: 0o640)
        tar.add("dev/null", kind: .character, mode: 0o666)
        tar.add("sparse", content: Array(repeating: 0, count: 64 * 1024) + Array("end".utf8))
        tar.add("etc/shadow", content: Array("x".utf8), mode: 0o640, xattrs: ["trusted.overlay.redirect": "/etc"])
        tar.finish()
        let report = try scratch.unpack(tar)
        #expect(report.files == 4 && report.skippedDevices == 1 && report.skippedAttributes == 1)

        var st = stat()
        #expect(lstat("\(scratch.root)/usr/bin/tool", &st) == 0 && st.st_mode & 0o7777 == 0o4755)
        var value = [UInt8](repeating: 0, count: 16)
        #expect(atoll_lgetxattr("\(scratch.root)/usr/bin/tool", "user.origin", &value, 16) == 4)
        #expect(atoll_lgetxattr("\(scratch.root)/etc/shadow", "trusted.overlay.redirect", &value, 16) < 0)
        #expect(lstat("\(scratch.root)/home/sandbox/notes.txt", &st) == 0 && st.st_uid == 1000 && st.st_nlink == 2)
        #expect(try String(contentsOfFile: "\(scratch.root)/home/sandbox/same.txt", encoding: .utf8) == "mine")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(scratch.root)/bin") == "usr/bin")
        #expect(lstat("\(scratch.root)/run/fifo", &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO && st.st_mode & 0o777 == 0o640)
        #expect(!FileManager.default.fileExists(atPath: "\(scratch.root)/dev/null"))
        #expect(lstat("\(scratch.root)/sparse", &st) == 0 && st.st_size == 64 * 1024 + 3 && st.st_blocks * 512 < 64 * 1024)
    }

    @Test("whiteouts become 0/0 character devices and .wh..wh..opq an opaque directory", .privileged)
    func whiteouts() throws {
        let scratch = try Scratch()
        var tar = TarWriter()
        tar.add("etc/", kind: .directory, mode: 0o755)
        tar.add("etc/.wh.motd")
        tar.add("var/cache/", kind: .directory, mode: 0o755)
        tar.add("var/cache/.wh..wh..opq")
        tar.finish()
        let report = try scratch.unpack(tar)
        #expect(report.whiteouts == 1 && report.opaqueDirectories == 1)
        var st = stat()
        #expect(lstat("\(scratch.root)/etc/motd", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == 0)
        var value = [UInt8](repeating: 0, count: 4)
        #expect(atoll_lgetxattr("\(scratch.root)/var/cache", "trusted.overlay.opaque", &value, 4) == 1 && value[0] == UInt8(ascii: "y"))
        #expect(!FileManager.default.fileExists(atPath: "\(scratch.root)/var/cache/.wh..wh..opq"))
    }

    @Test(
        "hostile entries are refused with the entry named and write nothing outside",
        .privileged,
        arguments: [
            ("dotdot", "../outside/pwned"),
            ("absolute", "/tmp/atoll-unpack-absolute"),
            ("symlink then write", "link/pwned"),
            ("hard link outside", "hardlink"),
            ("hard link through symlink", "hardlink-via-link"),
            ("owner out of range", "bigowner"),
        ])
    func refusesEscapes(name: String, entry: String) throws {
        let scratch = try Scratch()
        var tar = TarWriter()
        switch name {
        case "dotdot": tar.add(entry, content: Array("x".utf8))
        case "absolute": tar.add(entry, content: Array("x".utf8))
        case "symlink then write":
            tar.add("link", kind: .symlink, link: scratch.outside)
            tar.add(entry, content: Array("x".utf8))
        case "hard link outside": tar.add(entry, kind: .hardLink, link: "../outside/target")
        case "hard link through symlink":
            tar.add("link", kind: .symlink, link: scratch.outside)
            tar.add(entry, kind: .hardLink, link: "link/target")
        default: tar.add(entry, content: Array("x".utf8), uid: 70000)
        }
        tar.finish()
        if name.hasPrefix("hard link") { try Data("secret".utf8).write(to: URL(fileURLWithPath: "\(scratch.outside)/target")) }
        let message = scratch.refusal(tar)
        #expect(message.contains("refused"), "\(name): \(message)")
        #expect(message.contains(entry), "\(name): the message names the entry: \(message)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/atoll-unpack-absolute"))
        let outside = try FileManager.default.contentsOfDirectory(atPath: scratch.outside)
        #expect(outside.allSatisfy { $0 == "target" }, "\(name): wrote \(outside) outside")
        var st = stat()
        if lstat("\(scratch.outside)/target", &st) == 0 { #expect(st.st_nlink == 1, "\(name): linked an outside file") }
    }
}

@Suite("a build step's overlay upper as a layer", .serialized)
struct OverlayUpperTests {
    @Test("owners shift down from the sandbox's range; 0/0 devices stay whiteouts; .wh. names are names; only the opaque xattr of trusted.*", .privileged)
    func upper() throws {
        let scratch = try Scratch()
        let base = 200_000  // fits the 7 octal digits of a ustar id field
        var tar = TarWriter()
        tar.add("./", kind: .directory, mode: 0o755, uid: base, gid: base)
        tar.add("home/", kind: .directory, mode: 0o755, uid: base, gid: base, xattrs: ["trusted.overlay.opaque": "y", "trusted.overlay.redirect": "/x"])
        tar.add("home/file", content: Array("x".utf8), mode: 0o600, uid: base + 1000, gid: base + 1000)
        tar.add("home/removed", kind: .character, mode: 0)
        tar.add("home/.wh.name", content: Array("just a file".utf8), uid: base, gid: base)
        tar.finish()
        let unpacker = try LayerUnpacker(root: scratch.root, source: .overlayUpper(idBase: base))
        try unpacker.unpack(reader(tar.data))
        #expect(unpacker.report.whiteouts == 1 && unpacker.report.opaqueDirectories == 1 && unpacker.report.skippedAttributes == 1)
        var st = stat()
        #expect(lstat("\(scratch.root)/home/file", &st) == 0 && st.st_uid == 1000)
        #expect(lstat("\(scratch.root)/home/removed", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR)
        #expect(try String(contentsOfFile: "\(scratch.root)/home/.wh.name", encoding: .utf8) == "just a file")
        var value = [UInt8](repeating: 0, count: 8)
        #expect(atoll_lgetxattr("\(scratch.root)/home", "trusted.overlay.redirect", &value, 8) < 0)

        // An id outside the sandbox's range (a file the sandbox could not have made) is refused.
        let other = try Scratch()
        var foreign = TarWriter()
        foreign.add("f", content: [1], uid: 0)
        foreign.finish()
        let refusing = try LayerUnpacker(root: other.root, source: .overlayUpper(idBase: base))
        #expect(throws: AtollError.self) { try refusing.unpack(reader(foreign.data)) }
    }
}
