import AtollCore
import AtollLinux
import Glibc

/// A conformance check failed: what was expected and what was found.
struct CheckFailure: Error, CustomStringConvertible {
    var description: String
}

func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw CheckFailure(description: message()) }
}

/// One behaviour every cgroup backend must have, checked against the real kernel.
struct Check: Sendable {
    var name: String
    var summary: String
    var run: @Sendable (Conformance) throws -> Void
}

/// The cgroup backend protocol (`CgroupManaging`) against the kernel it runs on: the same checks
/// prove the v1 backend on a hybrid host and the v2 backend in a cgroup v2 guest. Helper
/// processes are this executable again (`helper MODE`), started inside the group under test
/// through the backend's placement handles.
struct Conformance: Sendable {
    let manager: any CgroupManaging
    /// This executable, for helpers.
    let executable: String

    static let checks: [Check] = [
        Check(name: "groups", summary: "groups live under the runtime's own name; removal leaves nothing; absent groups are fine", run: { try $0.groups() }),
        Check(
            name: "placement", summary: "a process started with the placement handles is in the group from its first instruction", run: { try $0.placement() }),
        Check(name: "cpu", summary: "a CPU hog at 0.5 vCPU uses 0.5 ± 0.1 CPU; a live change to 0.2 applies at once", run: { try $0.cpu() }),
        Check(name: "memory", summary: "with swap off, a process over the memory limit is OOM-killed and the kill is counted", run: { try $0.memory() }),
        Check(name: "pids", summary: "forks beyond the task limit fail and are counted", run: { try $0.pids() }),
        Check(name: "freeze", summary: "a frozen group's processes use no CPU until thawed", run: { try $0.freeze() }),
        Check(name: "kill", summary: "killing a group kills every task in it and leaves it empty", run: { try $0.kill() }),
        Check(name: "usage", summary: "usage reports CPU time, current and peak memory and tasks", run: { try $0.usage() }),
    ]

    // MARK: - Helpers

    /// Starts `helper MODE ARGS` in `group`; its standard output goes to the returned pipe.
    func start(_ group: String, _ mode: String, _ arguments: [String] = []) throws -> (PlacedProcess, OwnedFD) {
        let (read, write) = try KernelPipe.make()
        let process = try PlacedProcess.spawn(
            executable, arguments: ["atoll-cgroup-conformance", "helper", mode] + arguments,
            placement: try manager.placement(group), stdout: write.raw)
        write.close()
        return (process, read)
    }

    /// Reads one line from a helper (blocking; helpers print as soon as they are ready).
    func readLine(_ fd: OwnedFD) -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(fd.raw, &byte, 1) == 1 {
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// CPU the group used per second of wall-clock time over `seconds`.
    func cpuShare(_ group: String, seconds: Double) throws -> Double {
        let before = try manager.usage(group).cpuNanoseconds
        let start = Monotonic.now()
        sleepSeconds(seconds)
        let used = Double(try manager.usage(group).cpuNanoseconds - before) / 1e9
        return used / (Monotonic.now() - start)
    }

    /// A group for one check, removed afterwards whatever happens.
    func withGroup(_ name: String, _ limits: CgroupLimits, _ body: () throws -> Void) throws {
        try manager.create(name, limits: limits)
        defer {
            try? manager.killAll(name)
            try? manager.remove(name)
        }
        try body()
    }

    static let roomy = CgroupLimits(cpuMillis: 2000, memoryBytes: 512 << 20, pidsMax: 64)

    // MARK: - Checks

    func groups() throws {
        try manager.create("c-groups", limits: Self.roomy)
        let dirs = manager.directories("c-groups")
        try expect(!dirs.isEmpty, "the group has no directories")
        for dir in dirs {
            try expect(dir.hasSuffix("/\(manager.groupName)/c-groups"), "\(dir) is not under the runtime's own name \(manager.groupName)")
            try expect(KernelFile.isDirectory(dir), "\(dir) does not exist")
        }
        try expect(manager.exists("c-groups"), "exists() says no")
        try expect(manager.childGroups().contains("c-groups"), "childGroups() misses it: \(manager.childGroups())")
        try manager.create("c-groups", limits: Self.roomy)  // again: fine, limits rewritten
        try manager.remove("c-groups")
        for dir in dirs { try expect(!KernelFile.exists(dir), "\(dir) is left after remove") }
        try expect(!manager.exists("c-groups"), "exists() after remove")
        try manager.killAll("c-absent")
        try manager.remove("c-absent")
        try expect(throwsError { try manager.create("../escape", limits: Self.roomy) }, "a name with a slash was accepted")
    }

    func placement() throws {
        try withGroup("c-placement", Self.roomy) {
            let (process, output) = try start("c-placement", "where")
            let line = readLine(output)
            // v2: "0::/atoll…/c-placement"; v1: one line per hierarchy, e.g. "5:memory:/atoll…/c-placement".
            let path = "/\(manager.groupName)/c-placement"
            try expect(line.contains(path), "the helper's first look at /proc/self/cgroup was \(line.debugDescription), not in \(path)")
            let members = try manager.processes("c-placement")
            try expect(members == [process.pid], "processes() = \(members), expected [\(process.pid)]")
            try manager.killAll("c-placement")
            try expect(process.wait(timeout: 10) == .signaled(SIGKILL), "the helper did not die of SIGKILL")
        }
    }

    func cpu() throws {
        try withGroup("c-cpu", CgroupLimits(cpuMillis: 500, memoryBytes: 256 << 20, pidsMax: 32)) {
            let (process, output) = try start("c-cpu", "hog")
            _ = readLine(output)
            sleepSeconds(0.5)
            let half = try cpuShare("c-cpu", seconds: 3)
            try expect(abs(half - 0.5) <= 0.1, "a hog at 0.5 vCPU used \(half) CPU")
            try manager.update("c-cpu", limits: CgroupLimits(cpuMillis: 200, memoryBytes: 256 << 20, pidsMax: 32))
            sleepSeconds(0.3)
            let fifth = try cpuShare("c-cpu", seconds: 3)
            try expect(abs(fifth - 0.2) <= 0.1, "after a live change to 0.2 vCPU the hog used \(fifth) CPU")
            try manager.killAll("c-cpu")
            _ = process.wait(timeout: 10)
        }
    }

    func memory() throws {
        try withGroup("c-memory", CgroupLimits(cpuMillis: 1000, memoryBytes: 64 << 20, pidsMax: 32)) {
            let before = try manager.oomKills("c-memory")
            let (process, output) = try start("c-memory", "alloc", ["256"])
            let termination = process.wait(timeout: 60)
            let said = readLine(output)
            try expect(termination == .signaled(SIGKILL), "allocating 256 MiB under a 64 MiB limit ended as \(String(describing: termination)) (\(said))")
            let usage = try manager.usage("c-memory")
            try expect(usage.oomKills > before, "no OOM kill counted (oomKills \(usage.oomKills))")
            let counted = try manager.oomKills("c-memory")
            try expect(counted == usage.oomKills, "oomKills() = \(counted) disagrees with usage() = \(usage.oomKills)")
            try expect(
                usage.memoryPeakBytes >= 32 << 20 && usage.memoryPeakBytes <= (64 << 20) + (4 << 20),
                "peak memory \(usage.memoryPeakBytes) is not near the 64 MiB limit (swap would let it pass)")
        }
    }

    func pids() throws {
        try withGroup("c-pids", CgroupLimits(cpuMillis: 1000, memoryBytes: 256 << 20, pidsMax: 8)) {
            let (process, output) = try start("c-pids", "fork", ["32"])
            let line = readLine(output)  // "forked N failed M"
            let words = line.split(separator: " ")
            try expect(words.count == 4, "the fork helper said \(line.debugDescription)")
            let forked = Int(words[1]) ?? -1
            let failed = Int(words[3]) ?? -1
            try expect(forked == 7 && failed == 25, "with pids.max 8 the helper forked \(forked) and failed \(failed) times, expected 7 and 25")
            let usage = try manager.usage("c-pids")
            try expect(usage.pids == 8, "\(usage.pids) tasks in the group, expected 8")
            try expect(usage.pidsLimitHits >= 25, "\(usage.pidsLimitHits) limit hits counted, expected at least 25")
            try manager.killAll("c-pids")
            _ = process.wait(timeout: 10)
            let left = try manager.processes("c-pids")
            try expect(left.isEmpty, "tasks left after killAll: \(left)")
        }
    }

    func freeze() throws {
        try withGroup("c-freeze", Self.roomy) {
            let (process, output) = try start("c-freeze", "hog")
            _ = readLine(output)
            try manager.freeze("c-freeze")
            let frozen = try cpuShare("c-freeze", seconds: 1)
            try expect(frozen < 0.02, "a frozen hog used \(frozen) CPU")
            let members = try manager.processes("c-freeze")
            try expect(members == [process.pid], "the frozen process is not in the group: \(members)")
            try manager.thaw("c-freeze")
            let thawed = try cpuShare("c-freeze", seconds: 1)
            try expect(thawed > 0.5, "a thawed hog used only \(thawed) CPU")
            try manager.killAll("c-freeze")
            try expect(process.wait(timeout: 10) == .signaled(SIGKILL), "the hog did not die of SIGKILL")
        }
    }

    func kill() throws {
        try withGroup("c-kill", Self.roomy) {
            var sleepers: [PlacedProcess] = []
            for _ in 0..<3 {
                let (process, output) = try start("c-kill", "sleep")
                _ = readLine(output)
                sleepers.append(process)
            }
            let members = try manager.processes("c-kill")
            try expect(Set(members) == Set(sleepers.map(\.pid)), "processes() = \(members)")
            try manager.killAll("c-kill")
            for sleeper in sleepers {
                try expect(sleeper.wait(timeout: 10) == .signaled(SIGKILL), "pid \(sleeper.pid) did not die of SIGKILL")
            }
            let left = try manager.processes("c-kill")
            try expect(left.isEmpty, "tasks left after killAll: \(left)")
            try manager.remove("c-kill")
            try expect(!manager.exists("c-kill"), "the group is left after remove")
        }
    }

    func usage() throws {
        try withGroup("c-usage", Self.roomy) {
            let (process, output) = try start("c-usage", "hold", ["48"])
            try expect(readLine(output) == "ready", "the helper did not get its memory")
            let usage = try manager.usage("c-usage")
            try expect(usage.memoryBytes >= 48 << 20, "memory current \(usage.memoryBytes) < the 48 MiB the helper holds")
            try expect(usage.memoryPeakBytes >= usage.memoryBytes, "peak \(usage.memoryPeakBytes) < current \(usage.memoryBytes)")
            try expect(usage.pids == 1, "\(usage.pids) tasks, expected 1")
            try expect(usage.cpuNanoseconds > 0, "no CPU time counted")
            try expect(usage.oomKills == 0, "OOM kills counted without any")
            try manager.killAll("c-usage")
            _ = process.wait(timeout: 10)
        }
    }
}

func throwsError(_ body: () throws -> Void) -> Bool {
    do {
        try body()
        return false
    } catch {
        return true
    }
}

func sleepSeconds(_ seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
