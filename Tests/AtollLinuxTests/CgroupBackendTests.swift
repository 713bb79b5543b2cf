import AtollCore
import Foundation
import Testing

@testable import AtollLinux

/// Both cgroup backends against the fake cgroupfs: the same protocol, the kernel files each
/// version uses.
@Suite("cgroup backends on a fake cgroupfs")
struct CgroupBackendTests {
    let limits = CgroupLimits(cpuMillis: 500, memoryBytes: 1 << 30, pidsMax: 128)

    func v2() -> (CgroupV2Manager, FakeCgroupTree) {
        let tree = FakeCgroupTree(version: .v2, roots: ["/cg"])
        return (CgroupV2Manager(root: "/cg", groupName: "atoll", fileSystem: tree), tree)
    }

    func v1() throws -> (CgroupV1Manager, FakeCgroupTree) {
        let roots = ["/cg/cpu,cpuacct", "/cg/memory", "/cg/pids", "/cg/freezer"]
        let tree = FakeCgroupTree(version: .v1, roots: roots)
        let manager = try CgroupV1Manager(
            hierarchies: ["cpu": roots[0], "cpuacct": roots[0], "memory": roots[1], "pids": roots[2], "freezer": roots[3]],
            groupName: "atoll", fileSystem: tree)
        return (manager, tree)
    }

    @Test("v2: create writes cpu.max, memory.max with swap off, and pids.max under the top-level group")
    func v2Create() throws {
        let (manager, tree) = v2()
        try manager.create("sb1", limits: limits)
        #expect(tree.isDirectory("/cg/atoll/sb1"))
        #expect(tree.content("/cg/atoll/sb1/cpu.max") == "50000 100000")
        #expect(tree.content("/cg/atoll/sb1/memory.max") == "\(1 << 30)")
        #expect(tree.content("/cg/atoll/sb1/memory.swap.max") == "0")
        #expect(tree.content("/cg/atoll/sb1/pids.max") == "128")
        #expect(tree.content("/cg/atoll/cgroup.subtree_control") == "cpu memory pids\n", "controllers delegated to the sandbox groups")
        #expect(manager.exists("sb1"))
        #expect(manager.directories("sb1") == ["/cg/atoll/sb1"])
    }

    @Test("v2: live update, usage, freeze, kill and removal")
    func v2Lifecycle() throws {
        let (manager, tree) = v2()
        try manager.create("sb1", limits: limits)
        var bigger = limits
        bigger.cpuMillis = 2000
        bigger.memoryBytes = 2 << 30
        try manager.update("sb1", limits: bigger)
        #expect(tree.content("/cg/atoll/sb1/cpu.max") == "200000 100000")
        #expect(tree.content("/cg/atoll/sb1/memory.max") == "\(2 << 30)")

        tree.set("/cg/atoll/sb1/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
        tree.set("/cg/atoll/sb1/memory.current", "1048576\n")
        tree.set("/cg/atoll/sb1/memory.peak", "4194304\n")
        tree.set("/cg/atoll/sb1/memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
        tree.set("/cg/atoll/sb1/pids.current", "7\n")
        tree.set("/cg/atoll/sb1/pids.events", "max 12\n")
        tree.set("/cg/atoll/sb1/cgroup.procs", "101\n102\n")
        tree.set("/cg/atoll/sb1/cgroup.events", "populated 1\nfrozen 0\n")
        let usage = try manager.usage("sb1")
        #expect(usage == CgroupUsage(cpuNanoseconds: 2_500_000_000, memoryBytes: 1 << 20, memoryPeakBytes: 4 << 20, oomKills: 2, pids: 7, pidsLimitHits: 12))
        #expect(try manager.processes("sb1") == [101, 102])
        #expect(try manager.oomKills("sb1") == 2)

        try manager.freeze("sb1")
        #expect(tree.writes(to: "sb1/cgroup.freeze") == ["1"])
        try manager.thaw("sb1")
        #expect(tree.writes(to: "sb1/cgroup.freeze") == ["1", "0"])

        try manager.killAll("sb1")
        #expect(tree.writes(to: "sb1/cgroup.kill") == ["1"])
        #expect(tree.writes(to: "sb1/cgroup.freeze") == ["1", "0", "1", "0"], "frozen before the kill, thawed after")
        #expect(try manager.processes("sb1").isEmpty)
        try manager.remove("sb1")
        #expect(!manager.exists("sb1"))
        manager.removeTopLevelIfEmpty()
        #expect(!tree.isDirectory("/cg/atoll"))
    }

    @Test("v2: placement is the group directory for CLONE_INTO_CGROUP")
    func v2Placement() throws {
        let (manager, _) = v2()
        try manager.create("sb1", limits: limits)
        let placement = try manager.placement("sb1")
        #expect(placement.directory != nil)
        #expect(placement.procsFiles.isEmpty)
    }

    @Test("v2: missing controllers are reported by name")
    func v2MissingControllers() throws {
        let (manager, tree) = v2()
        tree.set("/cg/cgroup.controllers", "cpu io\n")
        #expect(throws: AtollError(.unavailable, "cgroup v2 controllers memory, pids are not available in /cg/cgroup.controllers")) {
            try manager.create("sb1", limits: limits)
        }
    }

    @Test("v1: one group per hierarchy, co-mounted controllers share one")
    func v1Create() throws {
        let (manager, tree) = try v1()
        try manager.create("sb1", limits: limits)
        #expect(manager.directories("sb1").sorted() == ["/cg/cpu,cpuacct/atoll/sb1", "/cg/freezer/atoll/sb1", "/cg/memory/atoll/sb1", "/cg/pids/atoll/sb1"])
        #expect(tree.content("/cg/cpu,cpuacct/atoll/sb1/cpu.cfs_quota_us") == "50000")
        #expect(tree.content("/cg/cpu,cpuacct/atoll/sb1/cpu.cfs_period_us") == "100000")
        #expect(tree.content("/cg/memory/atoll/sb1/memory.limit_in_bytes") == "\(1 << 30)")
        #expect(tree.content("/cg/memory/atoll/sb1/memory.memsw.limit_in_bytes") == "\(1 << 30)", "swap off where it is accounted")
        #expect(tree.content("/cg/pids/atoll/sb1/pids.max") == "128")
        #expect(try manager.placement("sb1").procsFiles.count == 4)
    }

    @Test("v1: memory and memsw are written in the order the kernel accepts")
    func v1MemoryOrder() throws {
        let (manager, tree) = try v1()
        try manager.create("sb1", limits: limits)
        var bigger = limits
        bigger.memoryBytes = 4 << 30
        try manager.update("sb1", limits: bigger)
        var smaller = limits
        smaller.memoryBytes = 512 << 20
        try manager.update("sb1", limits: smaller)
        let order = tree.writes.filter { $0.path.contains("memory.") && $0.path.contains("limit") }.map {
            ($0.path as NSString).lastPathComponent + "=" + $0.value
        }
        #expect(
            Array(order.suffix(4)) == [
                "memory.memsw.limit_in_bytes=\(4 << 30)", "memory.limit_in_bytes=\(4 << 30)",
                "memory.limit_in_bytes=\(512 << 20)", "memory.memsw.limit_in_bytes=\(512 << 20)",
            ])
    }

    @Test("v1: usage from cpuacct, memory and pids; kill freezes, signals and thaws")
    func v1UsageAndKill() throws {
        let (manager, tree) = try v1()
        try manager.create("sb1", limits: limits)
        tree.set("/cg/cpu,cpuacct/atoll/sb1/cpuacct.usage", "1500000000\n")
        tree.set("/cg/memory/atoll/sb1/memory.usage_in_bytes", "2097152\n")
        tree.set("/cg/memory/atoll/sb1/memory.max_usage_in_bytes", "8388608\n")
        tree.set("/cg/memory/atoll/sb1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
        tree.set("/cg/pids/atoll/sb1/pids.current", "3\n")
        tree.set("/cg/pids/atoll/sb1/pids.events", "max 5\n")
        #expect(
            try manager.usage("sb1")
                == CgroupUsage(cpuNanoseconds: 1_500_000_000, memoryBytes: 2 << 20, memoryPeakBytes: 8 << 20, oomKills: 1, pids: 3, pidsLimitHits: 5))
        #expect(try manager.oomKills("sb1") == 1)
        try manager.freeze("sb1")
        try manager.thaw("sb1")
        #expect(tree.writes(to: "freezer.state") == ["FROZEN", "THAWED"])
        try manager.remove("sb1")
        #expect(manager.directories("sb1").allSatisfy { !tree.isDirectory($0) })
        manager.removeTopLevelIfEmpty()
        #expect(!tree.isDirectory("/cg/memory/atoll"))
    }

    @Test("v1: a hierarchy that is not mounted is named")
    func v1Missing() {
        #expect(throws: AtollError(.unavailable, "cgroup v1 controllers freezer are not mounted")) {
            _ = try CgroupV1Manager(hierarchies: ["cpu": "/a", "cpuacct": "/a", "memory": "/b", "pids": "/c"], groupName: "atoll")
        }
    }

    @Test("group names cannot climb out of the top-level group")
    func names() throws {
        let (manager, _) = v2()
        for bad in ["", "..", "a/b", "."] {
            #expect(throws: AtollError.self) { try manager.create(bad, limits: limits) }
        }
    }
}
