import AtollCore
import AtollLinux
import Foundation
import Glibc

/// An in-memory cgroupfs that behaves like the kernel's where the backends rely on it: interface
/// files appear when a group directory is made, `cgroup.kill` empties a group, freezing updates
/// `cgroup.events` / `freezer.state`, and a directory with processes cannot be removed. It records
/// every write so tests can check what the backend asked the kernel for.
final class FakeCgroupTree: CgroupFileSystem, @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var files: [String: String] = [:]
    private var directories: Set<String> = []
    private(set) var writes: [(path: String, value: String)] = []
    /// Files a new group gets, with their initial content, by version.
    let version: CgroupVersion

    init(version: CgroupVersion, roots: [String]) {
        self.version = version
        for root in roots { directories.insert(root) }
        if version == .v2, let root = roots.first {
            files["\(root)/cgroup.controllers"] = "cpuset cpu io memory hugetlb pids rdma misc\n"
            files["\(root)/cgroup.subtree_control"] = "cpu memory pids\n"
        }
    }

    func set(_ path: String, _ value: String) { lock.withLock { files[path] = value } }
    func content(_ path: String) -> String? { lock.withLock { files[path] } }
    func writes(to suffix: String) -> [String] { lock.withLock { writes.filter { $0.path.hasSuffix(suffix) }.map(\.value) } }
    func isDirectory(_ path: String) -> Bool { lock.withLock { directories.contains(path) } }

    func read(_ path: String) throws -> String {
        try lock.withLock {
            guard let value = files[path] else { throw SystemError.error("open", path, errno: ENOENT) }
            return value
        }
    }

    func write(_ path: String, _ value: String) throws {
        try lock.withLock {
            guard files[path] != nil else { throw SystemError.error("open", path, errno: ENOENT) }
            writes.append((path, value))
            let dir = (path as NSString).deletingLastPathComponent
            switch (path as NSString).lastPathComponent {
            case "cgroup.kill":
                files["\(dir)/cgroup.procs"] = ""
                files["\(dir)/cgroup.events"] = "populated 0\nfrozen 0\n"
            case "cgroup.freeze":
                files["\(dir)/cgroup.events"] = "populated 1\nfrozen \(value == "1" ? 1 : 0)\n"
            case "freezer.state":
                files[path] = value + "\n"
            case "cgroup.subtree_control":
                var enabled = Set(files[path]!.split(whereSeparator: \.isWhitespace).map(String.init))
                for item in value.split(separator: " ") where item.hasPrefix("+") { enabled.insert(String(item.dropFirst())) }
                files[path] = enabled.sorted().joined(separator: " ") + "\n"
            default:
                files[path] = value
            }
        }
    }

    func exists(_ path: String) -> Bool { lock.withLock { files[path] != nil || directories.contains(path) } }

    func makeDirectory(_ path: String) throws {
        try lock.withLock {
            if directories.contains(path) { return }
            guard directories.contains((path as NSString).deletingLastPathComponent) else {
                throw SystemError.error("mkdir", path, errno: ENOENT)
            }
            directories.insert(path)
            let common = ["cgroup.procs": "", "tasks": ""]
            let v2 = [
                "cgroup.subtree_control": "", "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.freeze": "0", "cgroup.kill": "",
                "cpu.max": "max 100000\n", "cpu.stat": "usage_usec 0\n", "memory.max": "max\n", "memory.swap.max": "max\n",
                "memory.current": "0\n", "memory.peak": "0\n", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
                "pids.max": "max\n", "pids.current": "0\n", "pids.events": "max 0\n",
            ]
            let v1 = [
                "cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpuacct.usage": "0\n",
                "memory.limit_in_bytes": "9223372036854771712\n", "memory.memsw.limit_in_bytes": "9223372036854771712\n",
                "memory.usage_in_bytes": "0\n", "memory.max_usage_in_bytes": "0\n", "memory.swappiness": "60\n",
                "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", "pids.max": "max\n", "pids.current": "0\n",
                "pids.events": "max 0\n",
                "freezer.state": "THAWED\n",
            ]
            for (name, value) in common.merging(version == .v2 ? v2 : v1, uniquingKeysWith: { $1 }) {
                files["\(path)/\(name)"] = value
            }
        }
    }

    func removeDirectory(_ path: String) throws {
        try lock.withLock {
            guard directories.contains(path) else { return }
            if let procs = files["\(path)/cgroup.procs"], !procs.isEmpty { throw SystemError.error("rmdir", path, errno: EBUSY) }
            if directories.contains(where: { $0.hasPrefix(path + "/") }) { throw SystemError.error("rmdir", path, errno: EBUSY) }
            directories.remove(path)
            files = files.filter { !$0.key.hasPrefix(path + "/") }
        }
    }

    func children(_ path: String) -> [String] {
        lock.withLock {
            directories.filter { ($0 as NSString).deletingLastPathComponent == path }.map { ($0 as NSString).lastPathComponent }
        }
    }

    func open(_ path: String, directory: Bool) throws -> OwnedFD {
        guard exists(path) else { throw SystemError.error("open", path, errno: ENOENT) }
        return try OwnedFD(path: "/dev/null", flags: O_RDONLY)
    }
}
