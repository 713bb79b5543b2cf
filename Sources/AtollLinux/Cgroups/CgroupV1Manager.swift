import AtollCore
import Foundation
import Glibc

/// cgroup v1 backend for legacy and hybrid hosts: one hierarchy per controller. It uses cpu
/// (CFS quota), cpuacct (CPU time), memory (limit, swap off where accounted, OOM counter), pids
/// and freezer. There is no `cgroup.kill` in v1: killing is freeze, SIGKILL every task, thaw.
public struct CgroupV1Manager: CgroupManaging {
    public let version = CgroupVersion.v1
    public let groupName: String
    /// Mount point of each controller's hierarchy, e.g. `"memory": "/sys/fs/cgroup/memory"`.
    public let hierarchies: [String: String]
    let fs: any CgroupFileSystem

    /// The controllers a sandbox group is created in.
    public static let controllers = ["cpu", "cpuacct", "memory", "pids", "freezer"]

    public init(hierarchies: [String: String], groupName: String, fileSystem: any CgroupFileSystem = HostCgroupFileSystem()) throws {
        let missing = Self.controllers.filter { hierarchies[$0] == nil }
        guard missing.isEmpty else {
            throw AtollError(.unavailable, "cgroup v1 controllers \(missing.joined(separator: ", ")) are not mounted")
        }
        self.hierarchies = hierarchies
        self.groupName = groupName
        self.fs = fileSystem
    }

    /// Distinct hierarchy roots (co-mounted controllers such as cpu,cpuacct share one).
    var roots: [String] { Array(Set(Self.controllers.compactMap { hierarchies[$0] })).sorted() }

    func path(_ controller: String, _ name: String) -> String { "\(hierarchies[controller]!)/\(groupName)/\(name)" }

    public func directories(_ name: String) -> [String] { roots.map { "\($0)/\(groupName)/\(name)" } }

    public func exists(_ name: String) -> Bool { directories(name).contains { fs.exists($0) } }

    public func childGroups() -> [String] { Set(roots.flatMap { fs.children("\($0)/\(groupName)") }).sorted() }

    public func create(_ name: String, limits: CgroupLimits) throws {
        try CgroupName.check(name)
        for root in roots {
            try fs.makeDirectory("\(root)/\(groupName)")
            try fs.makeDirectory("\(root)/\(groupName)/\(name)")
        }
        do {
            try update(name, limits: limits)
            let swappiness = "\(path("memory", name))/memory.swappiness"
            if fs.exists(swappiness) { try? fs.write(swappiness, "0") }
        } catch {
            try? remove(name)
            throw error
        }
    }

    public func limitTopLevelTasks(_ max: Int) throws {
        guard let pids = hierarchies["pids"] else { return }
        let top = "\(pids)/\(groupName)"
        if fs.exists(top) { try fs.write("\(top)/pids.max", "\(max)") }
    }

    public func update(_ name: String, limits: CgroupLimits) throws {
        let cpu = path("cpu", name)
        try fs.write("\(cpu)/cpu.cfs_period_us", "\(CgroupLimits.cpuPeriodMicros)")
        try fs.write("\(cpu)/cpu.cfs_quota_us", "\(limits.cpuQuotaMicros)")
        try setMemory(path("memory", name), limit: limits.memoryBytes)
        try fs.write("\(path("pids", name))/pids.max", "\(limits.pidsMax)")
    }

    /// memory.memsw.limit_in_bytes (memory + swap) only exists with swap accounting; keeping it
    /// equal to the memory limit turns swap off. The kernel insists memsw >= memory at all times,
    /// so the order of the two writes depends on the direction of the change.
    func setMemory(_ dir: String, limit: UInt64) throws {
        let mem = "\(dir)/memory.limit_in_bytes"
        let memsw = "\(dir)/memory.memsw.limit_in_bytes"
        guard fs.exists(memsw) else {
            try fs.write(mem, "\(limit)")
            return
        }
        let currentMemsw = CgroupParse.number(try fs.read(memsw))
        if limit > currentMemsw {
            try fs.write(memsw, "\(limit)")
            try fs.write(mem, "\(limit)")
        } else {
            try fs.write(mem, "\(limit)")
            try fs.write(memsw, "\(limit)")
        }
    }

    public func placement(_ name: String) throws -> CgroupPlacement {
        let files = try roots.map { try fs.open("\($0)/\(groupName)/\(name)/cgroup.procs", directory: false) }
        return CgroupPlacement(directory: nil, procsFiles: files)
    }

    public func usage(_ name: String) throws -> CgroupUsage {
        let mem = path("memory", name)
        let oom = CgroupParse.keyValues(try fs.read("\(mem)/memory.oom_control"))
        let current = CgroupParse.number(try fs.read("\(mem)/memory.usage_in_bytes"))
        return CgroupUsage(
            cpuNanoseconds: CgroupParse.number(try fs.read("\(path("cpuacct", name))/cpuacct.usage")),
            memoryBytes: current,
            memoryPeakBytes: max(current, CgroupParse.number(try fs.read("\(mem)/memory.max_usage_in_bytes"))),
            // "oom_kill" is in memory.oom_control from Linux 4.13.
            oomKills: oom["oom_kill"] ?? 0,
            pids: Int(CgroupParse.number(try fs.read("\(path("pids", name))/pids.current"))),
            pidsLimitHits: fs.exists("\(path("pids", name))/pids.events")
                ? CgroupParse.keyValues(try fs.read("\(path("pids", name))/pids.events"))["max"] ?? 0 : 0
        )
    }

    public func oomKills(_ name: String) throws -> UInt64 {
        CgroupParse.keyValues(try fs.read("\(path("memory", name))/memory.oom_control"))["oom_kill"] ?? 0
    }

    public func processes(_ name: String) throws -> [Int32] {
        var all = Set<Int32>()
        for dir in directories(name) where fs.exists(dir) {
            all.formUnion(CgroupParse.pids(try fs.read("\(dir)/cgroup.procs")))
        }
        return all.sorted()
    }

    public func freeze(_ name: String) throws {
        let state = "\(path("freezer", name))/freezer.state"
        try fs.write(state, "FROZEN")
        let frozen = try Poll.until(timeout: 5) {
            try fs.read(state).trimmingCharacters(in: .whitespacesAndNewlines) == "FROZEN"
        }
        guard frozen else { throw AtollError(.timeout, "cgroup \(state) did not reach FROZEN within 5 s") }
    }

    public func thaw(_ name: String) throws {
        try fs.write("\(path("freezer", name))/freezer.state", "THAWED")
    }

    public func killAll(_ name: String) throws {
        guard exists(name) else { return }
        // Frozen tasks cannot fork, so one pass over cgroup.procs reaches all of them; SIGKILL is
        // delivered on thaw. Repeat in case a task was between fork and attach.
        for _ in 0..<20 {
            let pids = try processes(name)
            if pids.isEmpty { return }
            try freeze(name)
            for pid in try processes(name) { _ = kill(pid, SIGKILL) }
            try thaw(name)
            let empty = try Poll.until(timeout: 2) { try processes(name).isEmpty }
            if empty { return }
        }
        throw AtollError(.timeout, "cgroup \(groupName)/\(name) still has processes after repeated SIGKILL")
    }

    public func remove(_ name: String) throws {
        for dir in directories(name) where fs.exists(dir) {
            try CgroupRemoval.removeWithRetry(dir, fs: fs)
        }
    }

    public func removeTopLevelIfEmpty() {
        for root in roots {
            let top = "\(root)/\(groupName)"
            if fs.exists(top) && fs.children(top).isEmpty { try? fs.removeDirectory(top) }
        }
    }
}
