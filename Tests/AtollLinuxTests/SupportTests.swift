import AtollCore
import CRuntime
import Foundation
import Glibc
import Testing

@testable import AtollLinux

@Suite("errors, id ranges and the embedded init")
struct SupportTests {
    @Test("system errors name the call, the path and the errno")
    func systemErrors() {
        let error = SystemError.error("mount", "/var/lib/atoll/x", errno: EPERM)
        #expect(error.message == "mount(/var/lib/atoll/x): Operation not permitted (EPERM)")
        #expect(error.code == .system)
        // A host file missing is a system error (only domain code says "not found"), and the
        // call, path and errno stay available as a typed cause.
        let missing = SystemError.error("open", "/nope", errno: ENOENT)
        #expect(missing.code == .system)
        #expect(missing.systemCall == SystemCallError(call: "open", path: "/nope", errno: ENOENT))
        #expect(missing.description == missing.message, "the message already names the call")
        #expect(SystemError.error("write", errno: ENOSPC).code == .resourceExhausted)

        var failure = atoll_error()
        failure.err = EBUSY
        withUnsafeMutableBytes(of: &failure.call) { $0.copyBytes(from: Array("pivot_root".utf8) + [0]) }
        withUnsafeMutableBytes(of: &failure.path) { $0.copyBytes(from: Array(".".utf8) + [0]) }
        #expect(SystemError.error(failure).message == "pivot_root(.): Device or resource busy (EBUSY)")
    }

    @Test("error codes are unique and map to HTTP statuses")
    func codes() {
        #expect(Set(AtollError.Code.all.map(\.rawValue)).count == AtollError.Code.all.count)
        #expect(AtollError.Code.notFound.httpStatus == 404)
        #expect(AtollError.Code.conflict.httpStatus == 409)
        #expect(AtollError.Code.invalidArgument.httpStatus == 400)
    }

    @Test("id ranges map sandbox ids to host ids")
    func idRanges() throws {
        let range = IDRange(base: 1 << 30, count: 65536)
        #expect(try range.host(0) == 1 << 30 && range.host(1000) == (1 << 30) + 1000)
        // Ids a sandbox could write into its own /etc/passwd are refused, never added up.
        #expect(throws: AtollError.self) { try range.host(65536) }
        #expect(throws: AtollError.self) { try range.host(UInt32.max) }
        #expect(throws: AtollError.self) { try IDRange(base: UInt32.max - 10, count: 65536).host(100) }
        #expect(!IDRange(base: UInt32.max - 10, count: 65536).contains(hostID: 5))
        #expect(range.contains(hostID: range.base + 65535) && !range.contains(hostID: range.base + 65536))
        #expect(!range.contains(hostID: range.base - 1))
    }

    @Test("the embedded init is a small static executable")
    func initBinary() {
        let bytes = InitBinary.bytes
        #expect(bytes.count > 1000 && bytes.count < 64 << 10)
        #expect(bytes[16] == 2, "ET_EXEC: not position-independent, not a shared object")
        expectStaticELF(bytes)
    }

    @Test("between clone and execve the shim calls only async-signal-safe functions (no allocation)")
    func shimChildCallsNoAllocator() throws {
        // The object holding every child code path, next to this test binary in the build folder.
        let binary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let buildDirectory = (binary as NSString).deletingLastPathComponent
        var dir = buildDirectory
        var object = ""
        for _ in 0..<4 where object.isEmpty {
            let candidate = "\(dir)/CRuntime.build/src/shim_spawn.c.o"
            if FileManager.default.fileExists(atPath: candidate) { object = candidate }
            dir = (dir as NSString).deletingLastPathComponent
        }
        try #require(!object.isEmpty, "shim_spawn.c.o not found near \(binary)")
        let nm = try HostCommand.locate("nm", package: "binutils")
        let symbols = try HostCommand.run(nm, ["-u", object]).split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        // POSIX async-signal-safe functions (plus memcpy/memset, which are pure), and
        // pthread_sigmask / sigfillset, used only in the parent around clone3.
        let allowed: Set<String> = [
            "__errno_location", "_exit", "chdir", "close", "dup2", "execve", "fcntl", "fstat", "lstat", "memcpy", "memset",
            "ioctl", "mkdir", "mount", "open", "pipe2", "pthread_sigmask", "read", "sethostname", "setns", "sigfillset", "socket",
            "symlink", "syscall", "umask", "umount2", "unshare", "waitid", "write",
        ]
        #expect(!symbols.isEmpty)
        for symbol in symbols {
            #expect(allowed.contains(symbol), "shim_spawn.c calls \(symbol), which is not known to be async-signal-safe")
        }
    }
}

/// An ELF executable with no PT_INTERP program header: it needs no dynamic loader inside a sandbox.
func expectStaticELF(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(Array(bytes.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46], "ELF magic", sourceLocation: sourceLocation)
    let phoff = bytes[32..<40].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let phnum = Int(bytes[56]) | Int(bytes[57]) << 8
    for i in 0..<phnum {
        let type = bytes[(phoff + i * 56)..<(phoff + i * 56 + 4)].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(type != 3, "PT_INTERP found", sourceLocation: sourceLocation)
    }
}
