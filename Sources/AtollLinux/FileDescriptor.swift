public import AtollCore
import CRuntime
public import Glibc

/// An open file descriptor owned by exactly one object, closed when that object goes away.
///
/// Every descriptor Atoll opens is `O_CLOEXEC`; ownership is explicit so a descriptor is never
/// leaked into a sandbox nor closed twice.
public final class OwnedFD: @unchecked Sendable {
    // @unchecked: `raw` is immutable after init except through `take()`/`close()`, which callers
    // use from the single owner; the class exists to tie the descriptor's lifetime to an object.
    public private(set) var raw: Int32

    /// Takes ownership of `raw` (which must be open).
    public init(_ raw: Int32) {
        self.raw = raw
    }

    /// Opens `path` with `flags | O_CLOEXEC`.
    public convenience init(path: String, flags: Int32, mode: Glibc.mode_t = 0) throws(AtollError) {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        self.init(fd)
    }

    /// Releases ownership without closing; the caller now owns the descriptor.
    public func take() -> Int32 {
        let fd = raw
        raw = -1
        return fd
    }

    /// Closes the descriptor now.
    public func close() {
        if raw >= 0 {
            _ = Glibc.close(raw)
            raw = -1
        }
    }

    deinit { close() }
}

/// Small file helpers for kernel interfaces (cgroupfs, procfs, sysfs) where a short read or write
/// is one system call.
public enum KernelFile {
    /// Reads a whole (small) file as a string.
    public static func read(_ path: String, limit: Int = 1 << 20) throws(AtollError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        defer { _ = Glibc.close(fd) }
        var result = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 16384)
        while result.count < limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("read", path)
            }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// Writes `value` to an existing file in one `write` (how cgroupfs expects a value).
    public static func write(_ path: String, _ value: String) throws(AtollError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        defer { _ = Glibc.close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else {
            throw n < 0 ? SystemError.last("write", "\(path) <- \(value.prefix(40))") : SystemError.error("write", path, errno: EIO)
        }
    }

    /// Whether `path` exists (without following a final symlink).
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Whether `path` is a directory.
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}

/// Pipes whose both ends are close-on-exec.
public enum KernelPipe {
    /// A new pipe: (read end, write end).
    public static func make() throws(AtollError) -> (read: OwnedFD, write: OwnedFD) {
        var fds: [Int32] = [-1, -1]
        let rc = atoll_pipe_cloexec(&fds)
        guard rc == 0 else { throw SystemError.error("pipe2", errno: -rc) }
        return (OwnedFD(fds[0]), OwnedFD(fds[1]))
    }
}
