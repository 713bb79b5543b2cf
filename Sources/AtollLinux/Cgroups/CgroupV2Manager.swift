import AtollCore
import Foundation
import Glibc

/// cgroup v2 (unified hierarchy) backend: `cpu.max`, `memory.max` with `memory.swap.max` 0,
/// `pids.max`, `memory.events`, `cgroup.freeze`, `cgroup.kill` and `CLONE_INTO_CGROUP`.
public struct CgroupV2Manager: CgroupManaging {
    public let version = CgroupVersion.v2
    public let groupName: String
    /// Mount point of the unified hierarchy, normally `/sys/fs/cgroup`.
    public let root: String
    let fs: any CgroupFileSystem

    /// The controllers every sandbox group needs.
    static let controllers = ["cpu", "memory", "pids"]

    public init(root: String = "/sys/fs/cgroup", groupName: String, fileSystem: any CgroupFileSystem = HostCgroupFileSystem()) {
        self.root = root
        self.groupName = groupName
        self.fs = fileSystem
    }

    var topLevel: String { "\(root)/\(groupName)" }
    func path(_ name: String) -> String { "\(topLevel)/\(name)" }

    public func directories(_ name: String) -> [String] { [path(name)] }

    public func exists(_ name: String) -> Bool { fs.exists(path(name)) }

    public func childGroups() -> [String] { fs.children(topLevel).sorted() }

    /// Makes sure the top-level group exists and delegates cpu, memory and pids to its children.
    func prepareTopLevel() throws {
        let available = Set(try fs.read("\(root)/cgroup.controllers").split(whereSeparator: \.isWhitespace).map(String.init))
        let missing = Self.controllers.filter { !available.contains($0) }
        guard missing.isEmpty else {
            throw AtollError(.unavailable, "cgroup v2 controllers \(missing.joined(separator: ", ")) are not available in \(root)/cgroup.controllers")
        }
        let rootEnabled = Set(try fs.read("\(root)/cgroup.subtree_control").split(whereSeparator: \.isWhitespace).map(String.init))
        let rootMissing = Self.controllers.filter { !rootEnabled.contains($0) }
        if !rootMissing.isEmpty {
            // systemd normally delegates these already; enabling them adds, never removes.
            try fs.write("\(root)/cgroup.subtree_control", rootMissing.map { "+\($0)" }.joined(separator: " "))
        }
        try fs.makeDirectory(topLevel)
        let enabled = Set(try fs.read("\(topLevel)/cgroup.subtree_control").split(whereSeparator: \.isWhitespace).map(String.init))
        let toEnable = Self.controllers.filter { !enabled.contains($0) }
        if !toEnable.isEmpty {
            try fs.write("\(topLevel)/cgroup.subtree_control", toEnable.map { "+\($0)" }.joined(separator: " "))
        }
    }

    public func create(_ name: String, limits: CgroupLimits) throws {
        try CgroupName.check(name)
        try prepareTopLevel()
        try fs.makeDirectory(path(name))
        do {
            try update(name, limits: limits)
            if fs.exists("\(path(name))/memory.swap.max") { try fs.write("\(path(name))/memory.swap.max", "0") }
        } catch {
            try? fs.removeDirectory(path(name))
            throw error
        }
    }

    public func limitTopLevelTasks(_ max: Int) throws {
        let file = "\(root)/\(groupName)/pids.max"
        if fs.exists(file) { try fs.write(file, "\(max)") }
    }

    public func update(_ name: String, limits: CgroupLimits) throws {
        let dir = path(name)
        try fs.write("\(dir)/cpu.max", "\(limits.cpuQuotaMicros) \(CgroupLimits.cpuPeriodMicros)")
        try fs.write("\(dir)/memory.max", "\(limits.memoryBytes)")
        try fs.write("\(dir)/pids.max", "\(limits.pidsMax)")
    }

    public func placement(_ name: String) throws -> CgroupPlacement {
        CgroupPlacement(directory: try fs.open(path(name), directory: true), procsFiles: [])
    }

    public func usage(_ name: String) throws -> CgroupUsage {
        let dir = path(name)
        let cpuStat = CgroupParse.keyValues(try fs.read("\(dir)/cpu.stat"))
        let events = CgroupParse.keyValues(try fs.read("\(dir)/memory.events"))
        let current = CgroupParse.number(try fs.read("\(dir)/memory.current"))
        // memory.peak exists from Linux 5.19; before that the current value is the best answer.
        let peak = fs.exists("\(dir)/memory.peak") ? CgroupParse.number(try fs.read("\(dir)/memory.peak")) : current
        return CgroupUsage(
            cpuNanoseconds: (cpuStat["usage_usec"] ?? 0) * 1000,
            memoryBytes: current,
            memoryPeakBytes: max(peak, current),
            oomKills: events["oom_kill"] ?? 0,
            pids: Int(CgroupParse.number(try fs.read("\(dir)/pids.current"))),
            pidsLimitHits: fs.exists("\(dir)/pids.events") ? CgroupParse.keyValues(try fs.read("\(dir)/pids.events"))["max"] ?? 0 : 0
        )
    }

    public func oomKills(_ name: String) throws -> UInt64 {
        CgroupParse.keyValues(try fs.read("\(path(name))/memory.events"))["oom_kill"] ?? 0
    }

    public func processes(_ name: String) throws -> [Int32] {
        CgroupParse.pids(try fs.read("\(path(name))/cgroup.procs"))
    }

    public func freeze(_ name: String) throws {
        try fs.write("\(path(name))/cgroup.freeze", "1")
        let frozen = try Poll.until(timeout: 5) {
            CgroupParse.keyValues(try fs.read("\(path(name))/cgroup.events"))["frozen"] == 1
        }
        guard frozen else { throw AtollError(.timeout, "cgroup \(path(name)) did not freeze within 5 s") }
    }

    public func thaw(_ name: String) throws {
        try fs.write("\(path(name))/cgroup.freeze", "0")
    }

    public func killAll(_ name: String) throws {
        guard exists(name) else { return }
        // Freeze first so nothing forks while the kill lands (best effort: a task stuck in the
        // kernel can delay freezing, and cgroup.kill works on frozen and thawed tasks alike).
        try? freeze(name)
        // cgroup.kill (Linux 5.14) kills every task of the group in one go.
        try fs.write("\(path(name))/cgroup.kill", "1")
        let empty = try Poll.until(timeout: 10) {
            CgroupParse.keyValues(try fs.read("\(path(name))/cgroup.events"))["populated"] == 0
        }
        // Thawed again: a restarted sandbox reuses the group.
        try thaw(name)
        guard empty else { throw AtollError(.timeout, "cgroup \(path(name)) still has processes 10 s after cgroup.kill") }
    }

    public func remove(_ name: String) throws {
        guard exists(name) else { return }
        try CgroupRemoval.removeWithRetry(path(name), fs: fs)
    }

    public func removeTopLevelIfEmpty() {
        if fs.exists(topLevel) && fs.children(topLevel).isEmpty { try? fs.removeDirectory(topLevel) }
    }
}

/// Parsers for the small text formats of cgroupfs.
enum CgroupParse {
    /// `key value` lines (cpu.stat, memory.events, cgroup.events).
    static func keyValues(_ text: String) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let v = UInt64(parts[1]) { result[String(parts[0])] = v }
        }
        return result
    }

    /// A single number; "max" reads as UInt64.max.
    static func number(_ text: String) -> UInt64 {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if t == "max" { return .max }
        return UInt64(t) ?? 0
    }

    static func pids(_ text: String) -> [Int32] {
        text.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
    }
}

enum CgroupRemoval {
    /// rmdir fails with EBUSY while the last tasks are still exiting; give them a moment.
    static func removeWithRetry(_ dir: String, fs: any CgroupFileSystem) throws {
        var lastError: (any Error)?
        let removed = Poll.until(timeout: 5) {
            do {
                try fs.removeDirectory(dir)
                return true
            } catch {
                lastError = error
                return false
            }
        }
        if !removed { throw lastError ?? AtollError(.system, "rmdir(\(dir)) did not succeed") }
    }
}
