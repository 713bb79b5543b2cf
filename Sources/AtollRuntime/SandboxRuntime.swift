import AtollCore
import AtollLinux
import Foundation
import Glibc

/// What a new sandbox should be.
public struct SandboxSpec: Sendable {
    /// Defaults to a random UUID.
    public var id: SandboxID?
    public var snapshot: String
    public var resources: Resources
    /// Task limit; defaults to the runtime's.
    public var pidsMax: Int?
    /// Environment every process of the sandbox gets.
    public var env: [String: String]
    /// Default user of execs.
    public var user: String
    /// Tie the sandbox to the calling process: `reclaimAbandoned()` deletes it once that process
    /// is gone (for `atoll run`).
    public var ownedByCurrentProcess: Bool

    public init(id: SandboxID? = nil, snapshot: String = SnapshotStore.defaultName, resources: Resources = .defaults,
                pidsMax: Int? = nil, env: [String: String] = [:], user: String = "sandbox", ownedByCurrentProcess: Bool = false) {
        self.id = id
        self.snapshot = snapshot
        self.resources = resources
        self.pidsMax = pidsMax
        self.env = env
        self.user = user
        self.ownedByCurrentProcess = ownedByCurrentProcess
    }
}

/// A sandbox as the runtime reports it.
public struct SandboxInfo: Sendable {
    public var id: SandboxID
    /// `.started` or `.stopped` at this layer.
    public var state: SandboxState
    public var snapshot: String
    public var resources: Resources
    public var limits: CgroupLimits
    /// Host ids the sandbox's ids map to.
    public var ids: IDRange
    public var user: String
    public var createdAt: Date
    /// Host pid of the sandbox's PID 1 while started.
    public var initPid: Int32?
    public var diskPath: String
}

/// The sandbox runtime: creates, starts, stops and deletes isolated sandboxes on this host and
/// runs processes and code in them. One actor serialises lifecycle changes; execs suspend while
/// their output is pumped on a dedicated thread, so several can run at once.
public actor SandboxRuntime {
    public nonisolated let configuration: RuntimeConfiguration
    public nonisolated let cgroups: any CgroupManaging
    let spawner: any Spawning
    let store: SandboxStore
    let snapshots: SnapshotStore
    let idRanges: IDRangeAllocator
    let rootCapabilities: CapabilitySet

    /// Handles of started sandboxes: the init's pidfd and the cgroup placement handles.
    struct Live {
        var initProcess: SandboxInit
        var placement: CgroupPlacement
    }
    var live: [SandboxID: Live] = [:]

    /// Opens the runtime on `configuration.dataDirectory`. Needs root.
    public init(configuration: RuntimeConfiguration = RuntimeConfiguration()) throws {
        guard geteuid() == 0 else {
            throw AtollError(.unavailable, "the sandbox runtime needs root (namespaces, cgroups, loop devices); run as root")
        }
        self.configuration = configuration
        // A write to a pipe whose reader is gone must fail with EPIPE, not kill the runtime.
        signal(SIGPIPE, SIG_IGN)
        self.cgroups = try CgroupLayout.hostManager(groupName: configuration.cgroupName)
        self.spawner = try LinuxSpawner()
        self.store = SandboxStore(directory: configuration.sandboxesDirectory)
        self.snapshots = SnapshotStore(directory: configuration.snapshotsDirectory)
        self.idRanges = IDRangeAllocator(directory: configuration.idRangesDirectory, start: configuration.idRangeStart, slots: configuration.idRangeSlots)
        self.rootCapabilities = try CapabilitySet.sandboxRoot()
        for dir in [configuration.dataDirectory, configuration.sandboxesDirectory] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        }
    }

    // MARK: - Lifecycle

    /// Creates a sandbox (its own disk, id range and cgroup) and starts it.
    public func create(_ spec: SandboxSpec) throws -> SandboxInfo {
        try configuration.limits.validate(spec.resources)
        try EnvironmentValidation.validate(spec.env)
        let pidsMax = spec.pidsMax ?? configuration.pidsMax
        guard pidsMax >= 16 && pidsMax <= 1 << 22 else {
            throw AtollError(.invalidArgument, "pidsMax must be between 16 and \(1 << 22), got \(pidsMax)")
        }
        let snapshot = try snapshots.snapshot(named: spec.snapshot)
        let id = spec.id ?? SandboxID.random()
        guard !store.exists(id) else { throw AtollError(.conflict, "sandbox \(id) already exists") }

        let ids = try idRanges.allocate(owner: id.rawValue)
        let record = SandboxRecord(
            id: id, snapshot: snapshot.name, resources: spec.resources, limits: CgroupLimits(spec.resources, pidsMax: pidsMax),
            ids: ids, user: spec.user, env: spec.env, createdAt: Date(), running: nil,
            owner: spec.ownedByCurrentProcess ? .current() : nil
        )
        do {
            let dir = store.sandboxDirectory(id)
            guard mkdir(dir, 0o700) == 0 else { throw SystemError.last("mkdir", dir) }
            guard mkdir(store.mountPoint(id), 0o700) == 0 else { throw SystemError.last("mkdir", store.mountPoint(id)) }
            _ = try DiskImage.create(
                at: store.diskPath(id), sizeBytes: UInt64(spec.resources.diskGiB) << 30,
                entries: Self.diskEntries(id: id, ids: ids), scratch: dir
            )
            try store.save(record)
            return try startRecord(record)
        } catch {
            try? destroy(id: id, ids: ids)
            throw error
        }
    }

    /// What a fresh disk holds: the overlay's upper and work directories (the upper one owned by
    /// the sandbox's root, so `/` is root's inside), `/tmp`, and the sandbox's own hostname files.
    static func diskEntries(id: SandboxID, ids: IDRange) -> [DiskImage.Entry] {
        let root = ids.base
        return [
            .init(path: DiskLayout.upper, kind: .directory, uid: root, gid: root, mode: 0o755),
            .init(path: "\(DiskLayout.upper)/etc", kind: .directory, uid: root, gid: root, mode: 0o755),
            .init(path: "\(DiskLayout.upper)/etc/hostname", kind: .file("\(id)\n"), uid: root, gid: root, mode: 0o644),
            .init(path: "\(DiskLayout.upper)/etc/hosts",
                  kind: .file("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(id)\n"),
                  uid: root, gid: root, mode: 0o644),
            .init(path: DiskLayout.work, kind: .directory, uid: 0, gid: 0, mode: 0o700),
            .init(path: DiskLayout.tmp, kind: .directory, uid: root, gid: root, mode: 0o1777),
            .init(path: DiskLayout.root, kind: .directory, uid: 0, gid: 0, mode: 0o755),
        ]
    }

    /// Starts a stopped sandbox: same disk, fresh namespaces and processes.
    @discardableResult
    public func start(_ id: SandboxID) throws -> SandboxInfo {
        var record = try store.load(id)
        if try refreshRunning(&record) { return info(record) }
        return try startRecord(record)
    }

    func startRecord(_ record: SandboxRecord) throws -> SandboxInfo {
        var record = record
        let id = record.id
        let snapshot = try snapshots.snapshot(named: record.snapshot)
        let disk = store.diskPath(id)
        // A loop device still bound to this image means the previous run has not fully ended;
        // mounting the image twice would corrupt it.
        try LoopAttachment.waitDetached(image: disk, timeout: 5)
        if cgroups.exists(id.rawValue) {
            try cgroups.killAll(id.rawValue)
            try cgroups.update(id.rawValue, limits: record.limits)
        } else {
            try cgroups.create(id.rawValue, limits: record.limits)
        }
        do {
            let loop = try LoopAttachment.attach(disk)
            let plan = try RootfsPlan(diskDevice: loop.devicePath, diskMountPoint: store.mountPoint(id),
                                      snapshotRoot: snapshot.root, ids: record.ids).steps()
            let placement = try cgroups.placement(id.rawValue)
            let spec = SpawnSpec(plan: plan, userNamespace: try UserNamespace.create(record.ids), hostname: id.rawValue,
                                 cgroup: placement, identity: .root(capabilities: rootCapabilities))
            let initProcess = try spawner.spawn(spec)
            // The sandbox's mount now holds the loop device; autoclear detaches it when that goes.
            loop.handle.close()
            live[id] = Live(initProcess: initProcess, placement: placement)
            record.running = .init(
                initProcess: .init(pid: initProcess.pid, startTime: ProcFS.startTime(initProcess.pid) ?? 0),
                startedAt: Date()
            )
            try store.save(record)
            return info(record)
        } catch {
            try? cgroups.killAll(id.rawValue)
            live[id] = nil
            throw error
        }
    }

    /// Stops a sandbox: freezes and kills every process, and lets the kernel unmount its
    /// filesystems and detach its disk (which is kept).
    @discardableResult
    public func stop(_ id: SandboxID) throws -> SandboxInfo {
        var record = try store.load(id)
        try stopRecord(&record)
        return info(record)
    }

    func stopRecord(_ record: inout SandboxRecord) throws {
        let id = record.id
        try cgroups.killAll(id.rawValue)
        if let running = record.running {
            let handle = live[id]?.initProcess.pidfd
            try Self.waitForExit(pid: running.initProcess.pid, pidfd: handle)
        }
        live[id] = nil
        try LoopAttachment.waitDetached(image: store.diskPath(id))
        if record.running != nil {
            record.running = nil
            try store.save(record)
        }
    }

    /// Waits for a sandbox's init to be gone and reaps it if it is our child.
    static func waitForExit(pid: Int32, pidfd: OwnedFD?) throws {
        // Without a handle from this process (the sandbox was started by another one), take one
        // now; if the pid is already gone, so is the init.
        guard let fd = pidfd ?? (try? Pidfd.open(pid)) else { return }
        guard Pidfd.waitForExit(fd, timeout: 10) else {
            throw AtollError(.timeout, "init \(pid) still runs 10 s after its cgroup was killed")
        }
        Pidfd.reap(fd)
    }

    /// Deletes a sandbox and every trace of it: processes, cgroups, disk, files, id range.
    public func delete(_ id: SandboxID) throws {
        var record = try store.load(id)
        try stopRecord(&record)
        try destroy(id: id, ids: record.ids)
    }

    func destroy(id: SandboxID, ids: IDRange) throws {
        try cgroups.killAll(id.rawValue)
        try cgroups.remove(id.rawValue)
        live[id] = nil
        let dir = store.sandboxDirectory(id)
        if KernelFile.exists(dir) {
            try LoopAttachment.waitDetached(image: store.diskPath(id))
            do {
                try FileManager.default.removeItem(atPath: dir)
            } catch {
                throw AtollError(.system, "could not remove \(dir)", cause: "\(error)")
            }
        }
        try idRanges.release(ids, owner: id.rawValue)
    }

    /// Deletes sandboxes whose owning process (`SandboxSpec.ownedByCurrentProcess`) is gone, e.g.
    /// after an `atoll run` was killed. Returns the ids it removed.
    @discardableResult
    public func reclaimAbandoned() -> [SandboxID] {
        var removed: [SandboxID] = []
        for id in store.ids() {
            guard let record = try? store.load(id), let owner = record.owner, !owner.isRunning else { continue }
            if (try? delete(id)) != nil { removed.append(id) }
        }
        return removed
    }

    // MARK: - Queries and changes

    public func info(_ id: SandboxID) throws -> SandboxInfo {
        var record = try store.load(id)
        _ = try refreshRunning(&record)
        return info(record)
    }

    public func list() -> [SandboxInfo] {
        store.ids().compactMap { try? info($0) }
    }

    /// CPU, memory and task usage of a sandbox's cgroup.
    public func usage(_ id: SandboxID) throws -> CgroupUsage {
        _ = try store.load(id)
        return try cgroups.usage(id.rawValue)
    }

    /// Changes CPU, memory and task limits; applies at once to a started sandbox.
    public func updateLimits(_ id: SandboxID, _ limits: CgroupLimits) throws {
        var record = try store.load(id)
        guard limits.cpuMillis >= 10, limits.memoryBytes >= 16 << 20, limits.pidsMax >= 16 else {
            throw AtollError(.invalidArgument, "limits too small: at least 0.01 CPU, 16 MiB memory and 16 tasks")
        }
        if cgroups.exists(id.rawValue) { try cgroups.update(id.rawValue, limits: limits) }
        record.limits = limits
        try store.save(record)
    }

    /// Grows a stopped sandbox's disk.
    public func resizeDisk(_ id: SandboxID, gib: Int) throws {
        var record = try store.load(id)
        if try refreshRunning(&record) {
            throw AtollError(.conflict, "sandbox \(id) is started: stop it before resizing its disk")
        }
        var resources = record.resources
        resources.diskGiB = gib
        try configuration.limits.validate(resources)
        try DiskImage(path: store.diskPath(id)).grow(to: UInt64(gib) << 30)
        record.resources = resources
        try store.save(record)
    }

    /// Whether the record's init is still running; clears a stale running state (an init that
    /// died or a host that rebooted) after cleaning up what it left.
    func refreshRunning(_ record: inout SandboxRecord) throws -> Bool {
        guard let running = record.running else { return false }
        if running.initProcess.isRunning { return true }
        try stopRecord(&record)
        return false
    }

    func info(_ record: SandboxRecord) -> SandboxInfo {
        SandboxInfo(
            id: record.id, state: record.running == nil ? .stopped : .started, snapshot: record.snapshot,
            resources: record.resources, limits: record.limits, ids: record.ids, user: record.user,
            createdAt: record.createdAt, initPid: record.running?.initProcess.pid, diskPath: store.diskPath(record.id)
        )
    }

    /// Handles of a started sandbox, re-adopting it (pidfd by pid, checked by start time) when it
    /// was started by another process.
    func liveHandles(_ record: inout SandboxRecord) throws -> Live {
        guard try refreshRunning(&record), let running = record.running else {
            throw AtollError(.conflict, "sandbox \(record.id) is stopped: start it first")
        }
        if let handles = live[record.id] { return handles }
        let pidfd = try Pidfd.open(running.initProcess.pid)
        // The pidfd pins the process; re-check that it is still the same one.
        guard running.initProcess.isRunning else {
            throw AtollError(.conflict, "sandbox \(record.id) stopped while it was being adopted")
        }
        let handles = Live(initProcess: SandboxInit(pid: running.initProcess.pid, pidfd: pidfd),
                           placement: try cgroups.placement(record.id.rawValue))
        live[record.id] = handles
        return handles
    }
}
