import AtollCore
import Glibc

/// The file operations the cgroup backends need. The real one talks to cgroupfs; tests drive the
/// backends with a fake tree that behaves like the kernel's (interface files appear on mkdir,
/// `cgroup.kill` empties the group, and so on).
public protocol CgroupFileSystem: Sendable {
    func read(_ path: String) throws -> String
    func write(_ path: String, _ value: String) throws
    func exists(_ path: String) -> Bool
    func makeDirectory(_ path: String) throws
    func removeDirectory(_ path: String) throws
    /// Sub-directories (child groups) of `path`.
    func children(_ path: String) -> [String]
    /// Opens `path` for `CLONE_INTO_CGROUP` (a directory) or for writing `cgroup.procs`.
    func open(_ path: String, directory: Bool) throws -> OwnedFD
}

/// cgroupfs as mounted on the host.
public struct HostCgroupFileSystem: CgroupFileSystem {
    public init() {}

    public func read(_ path: String) throws -> String { try KernelFile.read(path) }

    public func write(_ path: String, _ value: String) throws { try KernelFile.write(path, value) }

    public func exists(_ path: String) -> Bool { KernelFile.exists(path) }

    public func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw SystemError.last("mkdir", path) }
    }

    public func removeDirectory(_ path: String) throws {
        if rmdir(path) != 0 && errno != ENOENT { throw SystemError.last("rmdir", path) }
    }

    public func children(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." && entry.pointee.d_type == UInt8(DT_DIR) { names.append(name) }
        }
        return names
    }

    public func open(_ path: String, directory: Bool) throws -> OwnedFD {
        try OwnedFD(path: path, flags: directory ? (O_RDONLY | O_DIRECTORY) : O_WRONLY)
    }
}

/// Polling with a deadline, for kernel state that settles asynchronously (freezing, emptying).
public enum Poll {
    /// Calls `done` every `interval` until it returns true or `timeout` passes; returns the last answer.
    public static func until(timeout: Double, interval: Double = 0.001, _ done: () throws -> Bool) rethrows -> Bool {
        let deadline = Monotonic.now() + timeout
        var delay = interval
        while true {
            if try done() { return true }
            if Monotonic.now() >= deadline { return false }
            usleep(useconds_t(delay * 1_000_000))
            delay = min(delay * 2, 0.05)
        }
    }
}

/// Monotonic time in seconds.
public enum Monotonic {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
