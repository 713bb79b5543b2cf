public import AtollCore
public import AtollImage
public import AtollLinux
import Foundation
import Glibc
import Synchronization

/// What the driver needs to know about a sandbox. The runner owns and persists it; the driver
/// keeps nothing but open handles of running sandboxes.
public struct SandboxMachine: Sendable, Hashable {
    public var id: SandboxID
    public var snapshot: String
    public var resources: Resources
    public var pidsMax: Int
    /// Host ids the sandbox's ids map to.
    public var ids: IDRange
    /// Environment every process of the sandbox gets.
    public var env: [String: String]
    /// Default user of execs.
    public var user: String
    /// Address and egress policy (nil: no address assigned, so loopback only).
    public var network: MachineNetwork?

    public init(
        id: SandboxID, snapshot: String, resources: Resources, pidsMax: Int, ids: IDRange, env: [String: String], user: String,
        network: MachineNetwork? = nil
    ) {
        self.id = id
        self.snapshot = snapshot
        self.resources = resources
        self.pidsMax = pidsMax
        self.ids = ids
        self.env = env
        self.user = user
        self.network = network
    }

    public var limits: CgroupLimits { CgroupLimits(resources, pidsMax: pidsMax) }
}

/// A sandbox's PID 1, identified by pid and start time so a recycled pid is never mistaken for it.
public struct InitProcess: Sendable, Hashable, Codable {
    public var pid: Int32
    public var startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    public var isRunning: Bool { ProcFS.isRunning(pid, startTime: startTime) }
}

/// An archived filesystem in the local object store.
public struct ArchiveInfo: Sendable, Hashable {
    public var path: String
    public var bytes: UInt64
    /// Hex SHA-256 of the archive file.
    public var sha256: String

    public init(path: String, bytes: UInt64, sha256: String) {
        self.path = path
        self.bytes = bytes
        self.sha256 = sha256
    }
}

/// Cancels a long-running driver operation (an archive) from another task.
public final class Cancellation: Sendable {
    private let state = Mutex<(cancelled: Bool, onCancel: (@Sendable () -> Void)?)>((false, nil))

    public init() {}

    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    public func cancel() {
        let action = state.withLock { s -> (@Sendable () -> Void)? in
            s.cancelled = true
            return s.onCancel
        }
        action?()
    }

    /// Runs `action` on cancellation (at once if already cancelled).
    func onCancel(_ action: @escaping @Sendable () -> Void) {
        let already = state.withLock { s -> Bool in
            s.onCancel = action
            return s.cancelled
        }
        if already { action() }
    }

    func clear() { state.withLock { $0.onCancel = nil } }
}

/// The mechanisms of a sandbox's life, without any state of its own: the runner decides, the
/// driver does. The real one drives the kernel; the runner's unit tests use a recording fake.
public protocol SandboxDriving: Sendable {
    /// Throws `notFound` (with how to build it) unless the snapshot exists.
    func checkSnapshot(_ name: String) throws
    /// Makes the sandbox's directory and disk (idempotent: an existing disk is kept).
    func provision(_ machine: SandboxMachine) async throws
    /// Starts PID 1 with a fresh set of namespaces on the existing disk.
    func start(_ machine: SandboxMachine) async throws -> InitProcess
    /// Kills every process, reaps PID 1 and waits for the disk to be released (kept). With a
    /// `grace` period, the sandbox's processes are asked to end first (SIGTERM, which PID 1
    /// forwards to all of them) and get up to that many seconds before they are killed.
    func stop(_ machine: SandboxMachine, initProcess: InitProcess?, grace: Double) async throws
    /// Stops and removes everything but the archive: cgroups, disk, directory.
    func destroy(_ machine: SandboxMachine) async throws
    func hasDisk(_ machine: SandboxMachine) -> Bool
    /// Whether the sandbox's PID 1 was started with an agent (sandboxes an older Atoll started
    /// have none, and run nothing until they are restarted).
    func hasAgent(_ machine: SandboxMachine) -> Bool
    func exec(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ExecResult
    func runCode(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: CodeRequest,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ExecResult
    /// The interpreters of the sandbox's snapshot.
    func languageRuntime(_ machine: SandboxMachine) throws -> LanguageRuntime
    /// A process the caller talks to while it runs (see `SandboxDriver.startLive`).
    func startLive(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest, terminal: TerminalSize?,
        input: LiveInput, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> LiveProcess
    /// A sandbox's root filesystem changes as a new image layer (a build step; a snapshot of a
    /// sandbox). `live`: the sandbox runs (its processes frozen by the caller).
    func captureLayer(_ machine: SandboxMachine, store: ImageStore, live: Bool) async throws -> (diffID: String, report: UnpackReport)
    /// The snapshot a sandbox was made from.
    func snapshot(of machine: SandboxMachine) throws -> Snapshot
    /// File access inside a started sandbox (see `SandboxFiles`).
    func files(_ machine: SandboxMachine, initProcess: InitProcess, user: String?) throws -> SandboxFiles
    /// Applies the machine's CPU, memory and task limits to its cgroup, live.
    func updateLimits(_ machine: SandboxMachine) async throws
    /// Freezes every process of the sandbox (cgroup freezer); returns once the kernel says frozen.
    func pause(_ machine: SandboxMachine) async throws
    /// Thaws a paused sandbox.
    func resume(_ machine: SandboxMachine) async throws
    /// Grows the (stopped) sandbox's disk to the machine's disk size.
    func growDisk(_ machine: SandboxMachine) async throws
    /// Writes the stopped sandbox's filesystem to a compressed archive, atomically; the disk stays.
    func archive(_ machine: SandboxMachine, cancellation: Cancellation) async throws -> ArchiveInfo
    /// Makes a new disk holding the archive's filesystem (checked against its checksum first).
    func restore(_ machine: SandboxMachine, from archive: ArchiveInfo) async throws
    func removeDisk(_ machine: SandboxMachine) async throws
    func removeArchive(path: String) throws
    func usage(_ machine: SandboxMachine) async throws -> CgroupUsage
    /// Bytes the sandbox's disk occupies on the host (its sparse image's allocated blocks; 0
    /// without a disk).
    func diskBytes(_ id: SandboxID) -> UInt64
    /// Removes what belongs to no known sandbox (cgroups, directories, archives, temporary
    /// archives) and says what it removed. `isKnown` is asked right before each removal, so a
    /// sandbox another process creates meanwhile is left alone.
    func removeOrphans(isKnown: @escaping @Sendable (SandboxID) -> Bool) async -> [String]
    /// Brings up the host side of sandbox networking and makes the firewall and links match the
    /// sandboxes `current()` returns (those that are or may soon be running; read under the
    /// network lock). Returns notes for the log (a host setting it changed).
    func prepareNetwork(current: @escaping @Sendable () throws -> [SandboxMachine]) async throws -> [String]
    /// Applies a running sandbox's network policy at once. `current` (read under the network
    /// lock) is the sandbox as it is now, or nil when it no longer runs.
    func updateNetworkPolicy(current: @escaping @Sendable () throws -> SandboxMachine?) async throws
}

extension SandboxDriving {
    /// Kills at once (no grace period): cleanup and the sweeper's stops.
    public func stop(_ machine: SandboxMachine, initProcess: InitProcess?) async throws {
        try await stop(machine, initProcess: initProcess, grace: 0)
    }
}

/// The real driver: namespaces, cgroups, loop-backed disks and archives on this host.
public final class SandboxDriver: SandboxDriving {
    public let configuration: DriverConfiguration
    public let cgroups: any CgroupManaging
    let spawner: any Spawning
    let disks: any DiskImages
    let userNamespaces: any UserNamespaces
    let snapshots: SnapshotStore
    let rootCapabilities: CapabilitySet
    /// Nil when sandboxes get loopback only.
    public let networking: (any NetworkAttaching)?

    /// Handles of started sandboxes: PID 1's pidfd and the cgroup placement handles.
    struct Live: Sendable {
        var initProcess: InitProcess
        var handle: SandboxInit
        var placement: CgroupPlacement
    }
    let live = Mutex<[SandboxID: Live]>([:])
    /// Working directories of snapshots, by snapshot directory name.
    let workingDirectories = Mutex<[String: String]>([:])

    /// Opens the driver on the host's real mechanisms. Needs root.
    public convenience init(configuration: DriverConfiguration) throws {
        guard geteuid() == 0 else {
            throw AtollError(.unavailable, "the sandbox runtime needs root (namespaces, cgroups, loop devices); run as root")
        }
        try self.init(configuration: configuration, mechanisms: try .host(configuration))
    }

    /// Opens the driver on the given mechanisms (tests pass recording fakes).
    public init(configuration: DriverConfiguration, mechanisms: HostMechanisms) throws {
        self.configuration = configuration
        // A write to a pipe whose reader is gone must fail with EPIPE, not kill the runtime.
        signal(SIGPIPE, SIG_IGN)
        self.cgroups = mechanisms.cgroups
        self.spawner = mechanisms.spawner
        self.disks = mechanisms.disks
        self.userNamespaces = mechanisms.userNamespaces
        self.snapshots = configuration.snapshotStore
        self.rootCapabilities = mechanisms.rootCapabilities
        self.networking = mechanisms.network
        for dir in [configuration.dataDirectory, configuration.sandboxesDirectory, configuration.archiveDirectory] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        }
    }

    public func checkSnapshot(_ name: String) throws { _ = try snapshots.snapshot(named: name) }

    /// The snapshot directory store (registered snapshots are written there by the runner).
    public var snapshotStore: SnapshotStore { snapshots }

    // MARK: - Disk and processes

    public func provision(_ machine: SandboxMachine) async throws {
        _ = try snapshots.snapshot(named: machine.snapshot)
        let config = configuration
        let disks = self.disks
        try await Blocking.run("atoll-provision") {
            let id = machine.id
            let dir = config.sandboxDirectory(id)
            for path in [dir, config.mountPoint(id)] where mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw SystemError.last("mkdir", path)
            }
            if KernelFile.exists(config.diskPath(id)) { return }
            try disks.create(
                at: config.diskPath(id), sizeBytes: UInt64(machine.resources.diskGiB) << 30,
                entries: Self.diskEntries(id: id, ids: machine.ids), scratch: dir
            )
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
            .init(
                path: "\(DiskLayout.upper)/etc/hosts",
                kind: .file("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(id)\n"),
                uid: root, gid: root, mode: 0o644),
            .init(path: DiskLayout.work, kind: .directory, uid: 0, gid: 0, mode: 0o700),
            .init(path: DiskLayout.tmp, kind: .directory, uid: root, gid: root, mode: 0o1777),
            .init(path: DiskLayout.root, kind: .directory, uid: 0, gid: 0, mode: 0o755),
            .init(path: DiskLayout.lower, kind: .directory, uid: 0, gid: 0, mode: 0o755),
        ]
    }

    public func hasDisk(_ machine: SandboxMachine) -> Bool { KernelFile.exists(configuration.diskPath(machine.id)) }

    public func hasAgent(_ machine: SandboxMachine) -> Bool {
        KernelFile.exists("\(configuration.sandboxDirectory(machine.id))/\(AgentConnection.socketName)")
    }

    public func start(_ machine: SandboxMachine) async throws -> InitProcess {
        let snapshot = try snapshots.snapshot(named: machine.snapshot)
        let id = machine.id
        let disk = configuration.diskPath(id)
        guard KernelFile.exists(disk) else { throw AtollError(.conflict, "sandbox \(id) has no disk (\(disk))") }
        // A loop device still bound to this image means the previous run has not fully ended;
        // mounting the image twice would corrupt it.
        let disks = self.disks
        try await Blocking.run("atoll-start") { try disks.waitDetached(image: disk, timeout: 5) }
        if cgroups.exists(id.rawValue) {
            try cgroups.killAll(id.rawValue)
            try cgroups.update(id.rawValue, limits: machine.limits)
        } else {
            try cgroups.create(id.rawValue, limits: machine.limits)
        }
        // All sandboxes together never take more than their share of the host's pids.
        try cgroups.limitTopLevelTasks(HostTasks.sandboxBudget)
        var attached: FirewallEntry?
        do {
            let networkNamespace = try attachNetwork(machine)
            attached = networkNamespace?.entry
            let loop = try disks.attach(disk)
            let plan = try RootfsPlan(
                diskDevice: loop.devicePath, diskMountPoint: configuration.mountPoint(id),
                snapshotLayers: snapshot.layers, ids: machine.ids
            ).steps()
            let placement = try cgroups.placement(id.rawValue)
            let listener = try AgentSocket.listen(directory: configuration.sandboxDirectory(id))
            let spec = SpawnSpec(
                plan: plan, userNamespace: try userNamespaces.create(machine.ids), hostname: id.rawValue,
                cgroup: placement, identity: .root(capabilities: rootCapabilities),
                network: networkNamespace?.namespace, agentListener: listener)
            let handle = try spawner.spawn(spec)
            // The sandbox's mount now holds the loop device (autoclear detaches it when that goes),
            // its PID 1 the network namespace and the agent's listening socket.
            loop.handle.close()
            networkNamespace?.namespace.close()
            listener.close()
            let initProcess = InitProcess(pid: handle.pid, startTime: ProcFS.startTime(handle.pid) ?? 0)
            live.withLock { $0[id] = Live(initProcess: initProcess, handle: handle, placement: placement) }
            if attached != nil { try await writeResolvConf(machine, initProcess: initProcess) }
            return initProcess
        } catch {
            try? cgroups.killAll(id.rawValue)
            // A PID 1 that was started goes with its handles (and is reaped: it is our child).
            if let started = live.withLock({ $0.removeValue(forKey: id) }) {
                try? Self.waitForExit(pid: started.initProcess.pid, pidfd: started.handle.pidfd)
            }
            if let attached { try? networking?.detach(slot: attached.slot) }
            throw error
        }
    }

    // MARK: - Network

    /// The sandbox's prepared network namespace, or nil when sandboxes get loopback only.
    func attachNetwork(_ machine: SandboxMachine) throws -> (namespace: OwnedFD, entry: FirewallEntry)? {
        guard let networking else { return nil }
        guard let entry = networking.entry(machine.id, machine.network) else {
            throw AtollError(.internal, "sandbox \(machine.id) has no address on the sandbox subnet \(networking.settings.subnet.cidr)")
        }
        return (try networking.attach(entry), entry)
    }

    /// The host's resolvers, as a file of the sandbox's root, written by the sandbox's agent (so
    /// a symlink planted in the sandbox can only lead to another file of the sandbox).
    func writeResolvConf(_ machine: SandboxMachine, initProcess: InitProcess) async throws {
        let files = try files(machine, initProcess: initProcess, user: "root")
        let bytes = Array(ResolvConf.forSandbox().utf8)
        try await WorkPool.shared.run { try files.write("/etc/resolv.conf", bytes: bytes, mode: 0o644) }
    }

    func detachNetwork(_ machine: SandboxMachine) throws {
        guard let networking, let entry = networking.entry(machine.id, machine.network) else { return }
        try networking.detach(slot: entry.slot)
    }

    public func prepareNetwork(current: @escaping @Sendable () throws -> [SandboxMachine]) async throws -> [String] {
        guard let networking else { return [] }
        return try await Blocking.run("atoll-network") {
            try networking.prepare { try current().compactMap { networking.entry($0.id, $0.network) } }
        }
    }

    public func updateNetworkPolicy(current: @escaping @Sendable () throws -> SandboxMachine?) async throws {
        guard let networking else { return }
        try await Blocking.run("atoll-network") {
            try networking.update { try current().flatMap { networking.entry($0.id, $0.network) } }
        }
    }

    public func stop(_ machine: SandboxMachine, initProcess: InitProcess?, grace: Double) async throws {
        let id = machine.id
        let cached = live.withLock { $0.removeValue(forKey: id) }
        let disk = configuration.diskPath(id)
        let cgroups = self.cgroups
        let disks = self.disks
        try await Blocking.run("atoll-stop") {
            if grace > 0, let initProcess {
                let handle = cached?.initProcess == initProcess ? cached?.handle.pidfd : nil
                Self.askToEnd(id.rawValue, initProcess: initProcess, pidfd: handle, cgroups: cgroups, grace: grace)
            }
            try cgroups.killAll(id.rawValue)
            if let initProcess {
                let handle = cached?.initProcess == initProcess ? cached?.handle.pidfd : nil
                try Self.waitForExit(pid: initProcess.pid, pidfd: handle)
            }
            if KernelFile.exists(disk) { try disks.waitDetached(image: disk, timeout: 5) }
            try self.detachNetwork(machine)
        }
    }

    /// A graceful stop's first half: SIGTERM to PID 1 (which sends it on to every process of the
    /// sandbox, as `docker stop` does through an init), then waits until PID 1 is the only process
    /// left or `grace` seconds pass. What is still running afterwards is killed by the caller.
    static func askToEnd(_ group: String, initProcess: InitProcess, pidfd: OwnedFD?, cgroups: any CgroupManaging, grace: Double) {
        // A pid is only signalled while it is still the sandbox's PID 1 (pid and start time).
        guard let fd = pidfd ?? (try? Pidfd.open(initProcess.pid)), initProcess.isRunning else { return }
        guard (try? Pidfd.signal(fd, SIGTERM)) != nil else { return }
        let deadline = ContinuousClock.now + .milliseconds(Int(grace * 1000))
        while ContinuousClock.now < deadline {
            guard let processes = try? cgroups.processes(group), processes.count > 1 else { return }
            usleep(10_000)
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

    public func destroy(_ machine: SandboxMachine) async throws {
        let id = machine.id
        let cached = live.withLock { $0.removeValue(forKey: id) }
        let config = configuration
        let cgroups = self.cgroups
        let disks = self.disks
        try await Blocking.run("atoll-destroy") {
            try cgroups.killAll(id.rawValue)
            // Reap PID 1 if this process started it (otherwise it would linger as a zombie).
            if let cached { try Self.waitForExit(pid: cached.initProcess.pid, pidfd: cached.handle.pidfd) }
            try cgroups.remove(id.rawValue)
            try self.detachNetwork(machine)
            let dir = config.sandboxDirectory(id)
            guard KernelFile.exists(dir) else { return }
            if KernelFile.exists(config.diskPath(id)) { try disks.waitDetached(image: config.diskPath(id), timeout: 5) }
            do {
                try FileManager.default.removeItem(atPath: dir)
            } catch {
                throw AtollError(.system, "could not remove \(dir)", cause: error)
            }
        }
    }

    // MARK: - Limits, disks, usage

    public func updateLimits(_ machine: SandboxMachine) async throws {
        if cgroups.exists(machine.id.rawValue) { try cgroups.update(machine.id.rawValue, limits: machine.limits) }
    }

    public func pause(_ machine: SandboxMachine) async throws {
        let cgroups = self.cgroups
        try await Blocking.run("atoll-pause") { try cgroups.freeze(machine.id.rawValue) }
    }

    public func resume(_ machine: SandboxMachine) async throws {
        let cgroups = self.cgroups
        try await Blocking.run("atoll-resume") { try cgroups.thaw(machine.id.rawValue) }
    }

    public func growDisk(_ machine: SandboxMachine) async throws {
        let path = configuration.diskPath(machine.id)
        let size = UInt64(machine.resources.diskGiB) << 30
        let disks = self.disks
        try await Blocking.run("atoll-grow-disk") { try disks.grow(path, to: size) }
    }

    public func usage(_ machine: SandboxMachine) async throws -> CgroupUsage {
        guard cgroups.exists(machine.id.rawValue) else { return CgroupUsage() }
        return try cgroups.usage(machine.id.rawValue)
    }

    public func diskBytes(_ id: SandboxID) -> UInt64 {
        var info = stat()
        guard stat(configuration.diskPath(id), &info) == 0 else { return 0 }
        return UInt64(info.st_blocks) * 512
    }

    public func removeDisk(_ machine: SandboxMachine) async throws {
        let disk = configuration.diskPath(machine.id)
        let disks = self.disks
        try await Blocking.run("atoll-remove-disk") {
            guard KernelFile.exists(disk) else { return }
            try disks.waitDetached(image: disk, timeout: 5)
            guard unlink(disk) == 0 || errno == ENOENT else { throw SystemError.last("unlink", disk) }
        }
    }

    // MARK: - Orphans

    public func removeOrphans(isKnown: @escaping @Sendable (SandboxID) -> Bool) async -> [String] {
        let config = configuration
        let cgroups = self.cgroups
        let disks = self.disks
        return
            (try? await Blocking.run("atoll-orphans") { () -> [String] in
                var removed: [String] = []
                let fm = FileManager.default
                for name in (try? fm.contentsOfDirectory(atPath: config.sandboxesDirectory)) ?? [] {
                    guard let id = try? SandboxID(name), !isKnown(id) else { continue }
                    try? cgroups.killAll(name)
                    try? cgroups.remove(name)
                    if KernelFile.exists(config.diskPath(id)) { try? disks.waitDetached(image: config.diskPath(id), timeout: 5) }
                    if (try? fm.removeItem(atPath: config.sandboxDirectory(id))) != nil { removed.append("directory \(config.sandboxDirectory(id))") }
                }
                for dir in cgroups.childGroups() {
                    guard let id = try? SandboxID(dir), !isKnown(id) else { continue }
                    try? cgroups.killAll(dir)
                    if (try? cgroups.remove(dir)) != nil { removed.append("cgroup \(config.cgroupName)/\(dir)") }
                }
                for name in (try? fm.contentsOfDirectory(atPath: config.archiveDirectory)) ?? [] {
                    let path = "\(config.archiveDirectory)/\(name)"
                    let base = name.components(separatedBy: ".").first ?? ""
                    let owned = (try? SandboxID(base)).map(isKnown) ?? false
                    if name.hasSuffix(".tmp") || !owned, (try? fm.removeItem(atPath: path)) != nil { removed.append("archive \(path)") }
                }
                return removed
            }) ?? []
    }
}
