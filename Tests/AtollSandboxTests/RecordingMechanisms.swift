import AtollCore
import AtollLinux
import AtollSandbox
import Foundation
import Glibc

/// What the driver asked of the host, in order, across every fake.
final class Recorder: @unchecked Sendable {
    // @unchecked: `entries` is only touched under `lock`.
    private let lock = NSLock()
    private var entries: [String] = []

    func record(_ entry: String) { lock.withLock { entries.append(entry) } }
    var calls: [String] { lock.withLock { entries } }
    /// The calls, with the ones that do not start with any of `prefixes` left out.
    func calls(_ prefixes: String...) -> [String] { calls.filter { call in prefixes.contains { call.hasPrefix($0) } } }
    func reset() { lock.withLock { entries = [] } }
}

/// Stands in for a sandbox's PID 1: a real `sleep` child of the test process (no namespaces), so
/// that the driver's pidfd waits and reaping work as they do on the host.
final class RecordingSpawner: Spawning, @unchecked Sendable {
    let recorder: Recorder
    let cgroups: RecordingCgroups
    private let lock = NSLock()
    private var failNext: AtollError?

    init(recorder: Recorder, cgroups: RecordingCgroups) {
        self.recorder = recorder
        self.cgroups = cgroups
    }

    func failNextSpawn(_ error: AtollError) { lock.withLock { failNext = error } }

    func spawn(_ spec: SpawnSpec) throws -> SandboxInit {
        recorder.record("spawn \(spec.hostname) agent=\(spec.agentListener != nil) network=\(spec.network != nil) steps=\(spec.plan.count)")
        if let error = lock.withLock({ () -> AtollError? in
            defer { failNext = nil }
            return failNext
        }) {
            throw error
        }
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("60"), nil]
        defer { for arg in argv { free(arg) } }
        let status = posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ)
        guard status == 0 else { throw SystemError.error("posix_spawn", "/bin/sleep", errno: status) }
        cgroups.adopt(pid, into: spec.hostname)
        return SandboxInit(pid: pid, pidfd: try Pidfd.open(pid))
    }
}

/// A cgroup tree in memory; `killAll` kills the processes the spawner put in the group.
final class RecordingCgroups: CgroupManaging, @unchecked Sendable {
    let recorder: Recorder
    private let lock = NSLock()
    private var groups: [String: [Int32]] = [:]

    init(recorder: Recorder) { self.recorder = recorder }

    var version: CgroupVersion { .v1 }
    var groupName: String { "atoll-test" }

    func adopt(_ pid: Int32, into name: String) { lock.withLock { groups[name, default: []].append(pid) } }

    func create(_ name: String, limits: CgroupLimits) throws {
        recorder.record("cgroup.create \(name) cpu=\(limits.cpuMillis) pids=\(limits.pidsMax)")
        lock.withLock { groups[name] = [] }
    }
    func update(_ name: String, limits: CgroupLimits) throws { recorder.record("cgroup.update \(name) cpu=\(limits.cpuMillis)") }
    func placement(_ name: String) throws -> CgroupPlacement {
        recorder.record("cgroup.placement \(name)")
        return CgroupPlacement(directory: nil, procsFiles: [])
    }
    func usage(_ name: String) throws -> CgroupUsage { CgroupUsage() }
    func oomKills(_ name: String) throws -> UInt64 { 0 }
    func processes(_ name: String) throws -> [Int32] { lock.withLock { groups[name] ?? [] } }
    func freeze(_ name: String) throws { recorder.record("cgroup.freeze \(name)") }
    func thaw(_ name: String) throws { recorder.record("cgroup.thaw \(name)") }
    func killAll(_ name: String) throws {
        recorder.record("cgroup.killAll \(name)")
        for pid in lock.withLock({ groups[name] ?? [] }) { kill(pid, SIGKILL) }
        lock.withLock { if groups[name] != nil { groups[name] = [] } }
    }
    func remove(_ name: String) throws {
        recorder.record("cgroup.remove \(name)")
        _ = lock.withLock { groups.removeValue(forKey: name) }
    }
    func limitTopLevelTasks(_ max: Int) throws { recorder.record("cgroup.limitTopLevelTasks") }
    func removeTopLevelIfEmpty() {}
    func exists(_ name: String) -> Bool { lock.withLock { groups[name] != nil } }
    func childGroups() -> [String] { lock.withLock { Array(groups.keys) } }
    func directories(_ name: String) -> [String] { [] }
}

/// Disk images as plain files; attaching hands out a descriptor of /dev/null as the device.
struct RecordingDisks: DiskImages {
    let recorder: Recorder

    func create(at path: String, sizeBytes: UInt64, entries: [DiskImage.Entry], scratch: String) throws {
        recorder.record("disk.create \(sizeBytes >> 30)GiB entries=\(entries.count)")
        guard FileManager.default.createFile(atPath: path, contents: Data()) else { throw SystemError.last("create", path) }
    }
    func attach(_ image: String) throws -> (devicePath: String, handle: OwnedFD) {
        recorder.record("disk.attach")
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", "/dev/null") }
        return ("/dev/loop-fake", OwnedFD(fd))
    }
    func waitDetached(image: String, timeout: Double) throws { recorder.record("disk.waitDetached") }
    func grow(_ image: String, to sizeBytes: UInt64) throws { recorder.record("disk.grow \(sizeBytes >> 30)GiB") }
}

struct RecordingUserNamespaces: UserNamespaces {
    let recorder: Recorder

    func create(_ range: IDRange) throws -> OwnedFD {
        recorder.record("userns.create \(range.base)")
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", "/dev/null") }
        return OwnedFD(fd)
    }
}

/// The host side of networking, recorded; the namespace handed out is a descriptor of /dev/null.
final class RecordingNetwork: NetworkAttaching, @unchecked Sendable {
    let recorder: Recorder
    let settings: NetworkSettings

    init(recorder: Recorder) throws {
        self.recorder = recorder
        self.settings = try NetworkSettings(subnet: try SandboxSubnet(parsing: "10.77.0.0/24"))
    }

    func attach(_ entry: FirewallEntry) throws -> OwnedFD {
        recorder.record("network.attach \(entry.slot)")
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", "/dev/null") }
        return OwnedFD(fd)
    }
    func detach(slot: Int) throws { recorder.record("network.detach \(slot)") }
    func prepare(current: () throws -> [FirewallEntry]) throws -> [String] {
        recorder.record("network.prepare \(try current().map(\.slot))")
        return []
    }
    func update(current: () throws -> FirewallEntry?) throws {
        recorder.record("network.update \(try current().map { "\($0.slot)" } ?? "-")")
    }
}
