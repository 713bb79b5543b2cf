import AtollCore
import CRuntime
import Foundation
import Glibc

/// A running sandbox's root directory, opened from the host through `/proc/<pid>/root` of its
/// PID 1. Every path is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so
/// `..`, absolute paths and symlinks — including ones the sandbox swaps in concurrently — stay
/// inside the sandbox and can never reach a host file.
public final class SandboxRoot: @unchecked Sendable {
    // @unchecked: immutable after init; the descriptor is only read.
    public let fd: OwnedFD

    /// Opens the root of the sandbox whose PID 1 is `pid`. `pidfd` proves the pid still names
    /// that process after the open (a recycled pid would fail the check).
    public init(initPid pid: Int32, pidfd: Int32) throws {
        let path = "/proc/\(pid)/root"
        let raw = Glibc.open(path, ATOLL_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard raw >= 0 else { throw SystemError.last("open", path) }
        fd = OwnedFD(raw)
        var failure = atoll_error()
        guard atoll_pidfd_signal(pidfd, 0, &failure) == 0 else {
            throw AtollError(.conflict, "the sandbox's init (pid \(pid)) is no longer running")
        }
    }

    /// Releases the root now. An open root pins the sandbox's mounts (and so its disk's loop
    /// device) even after the sandbox stopped, so holders close it as soon as they are done.
    public func close() {
        fd.close()
    }

    /// Opens `path` inside the sandbox.
    public func open(_ path: String, flags: Int32, mode: mode_t = 0) throws -> OwnedFD {
        var failure = atoll_error()
        let raw = atoll_open_in_root(fd.raw, path, flags, mode, &failure)
        guard raw >= 0 else { throw SystemError.error(failure) }
        return OwnedFD(raw)
    }

    /// Reads a regular file of at most `limit` bytes. Symlinks are followed — inside the root.
    public func read(_ path: String, limit: Int = 16 << 20) throws -> [UInt8] {
        // O_NONBLOCK: opening a FIFO the sandbox planted must not wait for a writer (it is then
        // refused as not a regular file); reads of regular files ignore the flag.
        let file = try open(path, flags: O_RDONLY | O_NONBLOCK)
        var st = stat()
        guard fstat(file.raw, &st) == 0 else { throw SystemError.last("fstat", path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw AtollError(.invalidArgument, "\(path) is not a regular file") }
        guard st.st_size <= limit else { throw AtollError(.invalidArgument, "\(path) is larger than \(limit) bytes") }
        var result = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(file.raw, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SystemError.last("read", path) }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
            if result.count > limit { throw AtollError(.invalidArgument, "\(path) is larger than \(limit) bytes") }
        }
        return result
    }

    /// Creates `path` (which must not exist) with `bytes`, owned by the given host ids.
    public func create(_ path: String, bytes: [UInt8], hostUID: UInt32, hostGID: UInt32, mode: mode_t) throws {
        let file = try open(path, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
        guard fchown(file.raw, hostUID, hostGID) == 0 else { throw SystemError.last("fchown", path) }
        guard fchmod(file.raw, mode) == 0 else { throw SystemError.last("fchmod", path) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(file.raw, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SystemError.last("write", path) }
            offset += n
        }
    }

    /// Removes the file `path` (not a directory); a missing file is fine.
    public func remove(_ path: String) throws {
        let (parent, name) = Self.split(path)
        let dir: OwnedFD
        do {
            dir = try open(parent, flags: ATOLL_O_PATH | O_DIRECTORY)
        } catch let error as AtollError where error.code == .notFound {
            return
        }
        guard unlinkat(dir.raw, name, 0) == 0 || errno == ENOENT else { throw SystemError.last("unlinkat", path) }
    }

    /// `stat` of `path` inside the sandbox (host ids).
    public func status(_ path: String) throws -> stat {
        let file = try open(path, flags: ATOLL_O_PATH | O_NOFOLLOW)
        var st = stat()
        guard fstat(file.raw, &st) == 0 else { throw SystemError.last("fstat", path) }
        return st
    }

    static func split(_ path: String) -> (parent: String, name: String) {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return (".", trimmed) }
        let parent = String(trimmed[..<slash])
        return (parent.isEmpty ? "/" : parent, String(trimmed[trimmed.index(after: slash)...]))
    }
}
