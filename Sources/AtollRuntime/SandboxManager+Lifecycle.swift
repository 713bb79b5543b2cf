public import AtollCore
public import AtollLinux
public import AtollSandbox
import AtollStore
import Foundation

extension SandboxManager {
    // MARK: - Create

    /// Creates a sandbox and starts it; returns it `started`. A value out of range is rejected
    /// before anything is made, with a message naming the field and the limit. If the machinery
    /// fails, the sandbox stays in `error` (recoverable) with the reason, and the error is thrown.
    public func create(_ parameters: CreateParameters) async throws -> Sandbox {
        let plan = try createPlan(parameters)
        // A chosen id asks for a sandbox built with it; anything else may come from a warm pool.
        if parameters.id == nil, let claimed = try await claimWarm(plan) { return claimed }
        return try await build(plan, pool: nil)
    }

    /// A create's parameters, validated and with every default filled in.
    struct CreatePlan {
        var id: SandboxID
        var name: String?
        var organizationId: String
        var labels: [String: String]
        var env: [String: String]
        var user: String
        var resources: Resources
        var pidsMax: Int
        var snapshot: String
        /// The registered snapshot's directory (its id), when `snapshot` names one.
        var snapshotRef: String? = nil
        var intervals: LifecycleIntervals
        var network: NetworkPolicy
        var owner: ProcessRef?
        var isPublic = false
        var autoPause = 0
        var ttlMinutes = 0

        var poolKey: WarmPoolKey { WarmPoolKey(snapshot: snapshotRef ?? snapshot, resources: resources, user: user, pidsMax: pidsMax) }
    }

    /// `snapshotMustExist` is false only for a failed image build, which records the request
    /// without a root to build from; every other field is validated the same either way.
    func createPlan(_ parameters: CreateParameters, snapshotMustExist: Bool = true) throws -> CreatePlan {
        let organizationId = parameters.organizationId ?? configuration.organizationId
        // A snapshot the organization registered (from an image or a Dockerfile) supplies the
        // defaults its image config and record carry: environment, user, resources.
        var registered: (directory: String, record: SnapshotRecord, snapshot: Snapshot)?
        if snapshotMustExist, let name = parameters.snapshot, name != SnapshotStore.defaultName {
            registered = try snapshots.resolve(name, organizationId: organizationId)
            if registered == nil && !SandboxID.isValid(name) {
                throw AtollError(.notFound, "snapshot \"\(name.prefix(128))\" not found")
            }
        }
        let resources =
            parameters.resources ?? registered.map { Resources(cpu: $0.record.cpu, memoryGiB: $0.record.memoryGiB, diskGiB: $0.record.diskGiB) }
            ?? .defaults
        try configuration.limits.validate(resources)
        try EnvironmentValidation.validate(parameters.env)
        var labels = parameters.labels
        if let language = parameters.language {
            labels[Language.labelKey] = language.rawValue
        } else if let given = labels[Language.labelKey] {
            _ = try Language(parsing: given)
        } else {
            labels[Language.labelKey] = Language.default.rawValue
        }
        try Naming.validateLabels(labels)
        var intervals = parameters.intervals
        if parameters.ephemeral { intervals.autoDelete = 0 }
        try intervals.validate()
        if let allow = parameters.network.allowList {
            // Library callers build policies directly: the same checks as the wire's constructor.
            guard !allow.isEmpty else { throw AtollError(.invalidArgument, "networkAllowList is empty: pass nil for open egress, or block all") }
            _ = try NetworkPolicy.parseAllowList(allow.joined(separator: ","))
        }
        try Self.checkAutoPause(parameters.autoPause)
        try Self.checkTTL(parameters.ttlMinutes)
        let user = parameters.user ?? registered.map { $0.snapshot.user ?? "root" } ?? "sandbox"
        guard !user.isEmpty, user.utf8.count <= 64, !user.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            throw AtollError(.invalidArgument, "user \"\(user.prefix(64))\" is not a valid user name")
        }
        let pidsMax = parameters.pidsMax ?? configuration.pidsMax
        guard pidsMax >= 16 && pidsMax <= 1 << 22 else {
            throw AtollError(.invalidArgument, "pidsMax must be between 16 and \(1 << 22), got \(pidsMax)")
        }
        let snapshot = parameters.snapshot ?? (snapshotMustExist ? "default" : "")
        if snapshotMustExist && registered == nil { try driver.checkSnapshot(snapshot) }
        if let name = parameters.name { try Naming.validateName(name) }
        var env = parameters.env
        if let registered { env = registered.snapshot.environment.merging(parameters.env) { $1 } }
        var plan = CreatePlan(
            id: parameters.id ?? SandboxID.random(), name: parameters.name,
            organizationId: organizationId, labels: labels, env: env,
            user: user, resources: resources, pidsMax: pidsMax, snapshot: registered?.record.name ?? snapshot, intervals: intervals,
            network: parameters.network, owner: parameters.ownedByCurrentProcess ? me : nil, isPublic: parameters.isPublic,
            autoPause: parameters.autoPause, ttlMinutes: parameters.ttlMinutes)
        plan.snapshotRef = registered?.directory
        return plan
    }

    /// The cold path: a new disk, cgroup, network and PID 1. `pool` marks a warm pool member.
    func build(_ plan: CreatePlan, pool: String?) async throws -> Sandbox {
        let id = plan.id
        let name = plan.name ?? id.rawValue
        try Naming.validateName(name)
        let at = now
        let token = UUID().uuidString
        let owner = plan.owner
        var row = Self.newRow(plan, name: name, state: .creating, at: at)
        row.ownerPid = owner?.pid
        row.ownerStartTime = owner.map { Int64($0.startTime) }
        row.opPid = me.pid
        row.opStartTime = Int64(me.startTime)
        row.opToken = token
        row.deadline = at + configuration.deadlines.creating
        row.pool = pool
        try admit(
            AdmissionRequest(
                cpu: plan.resources.cpu, memoryGiB: plan.resources.memoryGiB, diskGiB: plan.resources.diskGiB,
                newSandbox: true), organization: plan.organizationId)
        // The row exists before anything on disk does, so no other process takes the disk,
        // cgroup or directory for an orphan.
        row = try database.insert(
            row, idRangeStart: Int64(configuration.idRangeStart), idRangeSize: 65536,
            idRangeSlots: configuration.idRangeSlots, reason: pool == nil ? "create" : "create for the warm pool")
        Failpoint.hit("create.after-insert")
        return try await provisionAndStart(row, token: token)
    }

    /// The second half of a create, on a row in `creating` this process owns (`token`): address,
    /// disk, PID 1. A failure leaves the sandbox in `error` (recoverable) and is thrown.
    func provisionAndStart(_ inserted: SandboxRow, token: String) async throws -> Sandbox {
        var row = inserted
        let machine: SandboxMachine
        do {
            row = try withAddress(row)
            machine = try Self.machine(row)
        } catch {
            fail(row.id, token: token, error, recoverable: true)
            throw error
        }
        do {
            try await driver.provision(machine)
            Failpoint.hit("create.after-provision")
            let started = try await driver.start(machine)
            Failpoint.hit("create.after-start")
            row = try finish(row.id, token: token, to: .started, reason: "created") { row in
                row.initProcess = started
            }
            return Sandbox(row)
        } catch {
            try? await driver.stop(machine, initProcess: nil)
            fail(row.id, token: token, error, recoverable: true)
            throw error
        }
    }

    // MARK: - Create from a Dockerfile

    /// Daytona's create with `buildInfo`: the sandbox is recorded in `pending_build` at once and
    /// returned; its snapshot is built in the background (an identical Dockerfile is built once
    /// per organization and reused), then the sandbox is created on it and started. A failed
    /// build leaves it in `build_failed` with the builder's reason.
    public func createFromBuild(_ parameters: CreateParameters, dockerfile: String) throws -> Sandbox {
        let organizationId = parameters.organizationId ?? configuration.organizationId
        var pending = parameters
        pending.snapshot = nil
        // Everything is checked before anything is pulled or built.
        let plan = try createPlan(pending, snapshotMustExist: false)
        try Naming.validateName(plan.name ?? plan.id.rawValue)
        let snapshot = try snapshots.snapshot(forDockerfile: dockerfile, organizationId: organizationId)
        var row = Self.newRow(plan, name: plan.name ?? plan.id.rawValue, state: .pendingBuild, at: now)
        row.snapshot = snapshot.name
        row.opPid = me.pid
        row.opStartTime = Int64(me.startTime)
        row.opToken = UUID().uuidString
        try Naming.validateName(row.name)
        row = try database.insert(
            row, idRangeStart: Int64(configuration.idRangeStart), idRangeSize: 65536,
            idRangeSlots: configuration.idRangeSlots, reason: "create from a Dockerfile: building snapshot \(snapshot.name)")
        var resolved = parameters
        resolved.id = plan.id
        resolved.organizationId = organizationId
        Task { [row] in await self.finishBuild(row, snapshotId: snapshot.id, parameters: resolved) }
        return Sandbox(row)
    }

    /// Waits for the snapshot, then creates the sandbox on it (or records why it cannot be).
    func finishBuild(_ pending: SandboxRow, snapshotId: String, parameters: CreateParameters) async {
        let token = pending.opToken ?? ""
        func failBuild(_ reason: String) {
            _ = try? database.update(id: pending.id, reason: reason, at: now) { row in
                guard row.sandboxState == .pendingBuild else { return }
                row.state = SandboxState.buildFailed.rawValue
                row.errorReason = reason
                row.opPid = nil
                row.opStartTime = nil
                row.opToken = nil
            }
        }
        let record: SnapshotRecord
        do {
            record = try await snapshots.settled(snapshotId)
        } catch {
            return failBuild("the snapshot being built was deleted")
        }
        guard record.state == SnapshotState.active.rawValue else {
            return failBuild(record.errorReason ?? "the snapshot build ended in \(record.state)")
        }
        let row: SandboxRow
        do {
            var parameters = parameters
            parameters.snapshot = record.name
            let plan = try createPlan(parameters)
            try admit(
                AdmissionRequest(cpu: plan.resources.cpu, memoryGiB: plan.resources.memoryGiB, diskGiB: plan.resources.diskGiB, newSandbox: false),
                organization: plan.organizationId)
            let at = now
            row = try database.update(id: pending.id, reason: "snapshot \(record.name) built: creating", at: at) { row in
                guard row.opToken == token else { throw AtollError(.conflict, "sandbox \(row.id) changed while its snapshot was built") }
                try Self.checkTable(from: row.sandboxState, to: .creating, id: row.id)
                row.state = SandboxState.creating.rawValue
                row.snapshot = plan.snapshot
                row.snapshotRef = plan.snapshotRef
                row.env = StringMapColumn.encode(plan.env)
                row.user = plan.user
                row.cpu = plan.resources.cpu
                row.memoryGiB = plan.resources.memoryGiB
                row.diskGiB = plan.resources.diskGiB
                row.deadline = at + configuration.deadlines.creating
            }
        } catch {
            return failBuild((error as? AtollError)?.message ?? "\(error)")
        }
        _ = try? await provisionAndStart(row, token: token)
    }

    // MARK: - Start

    /// Starts a stopped or archived sandbox (an archived one is restored first). A start while an
    /// archive is running cancels the archive, so "stop, archive, start" always works. Starting a
    /// started (or starting) sandbox returns it as it is.
    public func start(_ idOrName: String, organizationId: String? = nil) async throws -> Sandbox {
        var row = try row(idOrName, organizationId: organizationId)
        switch row.sandboxState {
        case .started:
            if let process = row.initProcess, process.isRunning { return Sandbox(row) }
            // PID 1 died underneath: clean up and start afresh.
            row = try await settleDeadInit(row)
            return try await startStopped(row)
        case .starting, .restoring, .resuming:
            return Sandbox(row)
        case .paused:
            return try await resume(row)
        case .archiving:
            if let job = background[row.id] {
                job.cancellation.cancel()
                await job.task.value
            } else {
                throw Self.conflict(row, operation: "started")
            }
            return try await start(row.id, organizationId: row.organizationId)
        case .archived:
            return try await startArchived(row)
        case .stopped:
            return try await startStopped(row)
        default:
            throw Self.conflict(row, operation: "started")
        }
    }

    func startStopped(_ row: SandboxRow) async throws -> Sandbox {
        try admit(AdmissionRequest(cpu: row.cpu, memoryGiB: row.memoryGiB, diskGiB: 0, newSandbox: false), organization: row.organizationId)
        let (row, token) = try begin(row.id, from: [.stopped], to: .starting, operation: "started", reason: "start")
        do {
            let machine = try Self.machine(try withAddress(row))
            let started = try await driver.start(machine)
            Failpoint.hit("start.after-start")
            return Sandbox(
                try finish(row.id, token: token, to: .started, reason: "started") { row in
                    row.initProcess = started
                })
        } catch {
            if let machine = try? Self.machine(try database.sandbox(id: row.id) ?? row) { try? await driver.stop(machine, initProcess: nil) }
            // Nothing was lost: the disk is as it was, so the sandbox is simply stopped again.
            _ = try? finish(row.id, token: token, to: .stopped, reason: "start failed: \(error)")
            throw error
        }
    }

    func startArchived(_ row: SandboxRow) async throws -> Sandbox {
        try admit(AdmissionRequest(cpu: row.cpu, memoryGiB: row.memoryGiB, diskGiB: row.diskGiB, newSandbox: false), organization: row.organizationId)
        var (row, token) = try begin(row.id, from: [.archived], to: .restoring, operation: "started", reason: "start from archive")
        let machine: SandboxMachine
        do {
            row = try withAddress(row)
            machine = try Self.machine(row)
        } catch {
            _ = try? finish(row.id, token: token, to: .archived, reason: "restore failed: \(error)")
            throw error
        }
        guard let path = row.archivePath, let bytes = row.archiveBytes, let sha = row.archiveSHA256 else {
            let error = AtollError(.internal, "sandbox \(row.id) is archived but its archive is not recorded")
            fail(row.id, token: token, error, recoverable: false)
            throw error
        }
        let archive = ArchiveInfo(path: path, bytes: UInt64(bytes), sha256: sha)
        do {
            try await driver.restore(machine, from: archive)
            Failpoint.hit("restore.after-restore")
            // Still `restoring` in the database until the sandbox runs: a crash now finds the
            // archive intact and goes back to `archived`.
            let started = try await driver.start(machine)
            row = try finish(row.id, token: token, to: .started, reason: "restored and started") { row in
                row.initProcess = started
                row.archivePath = nil
                row.archiveBytes = nil
                row.archiveSHA256 = nil
            }
            try? driver.removeArchive(path: path)
            return Sandbox(row)
        } catch {
            try? await driver.stop(machine, initProcess: nil)
            try? await driver.removeDisk(machine)
            _ = try? finish(row.id, token: token, to: .archived, reason: "restore failed: \(error)")
            throw error
        }
    }

    /// A `started` row whose PID 1 is gone: its processes and mounts are cleaned up, and the
    /// sandbox is `stopped`.
    func settleDeadInit(_ row: SandboxRow) async throws -> SandboxRow {
        let (row, token) = try begin(row.id, from: [.started], to: .stopping, operation: "stopped", reason: "PID 1 is gone")
        try await driver.stop(try Self.machine(row), initProcess: row.initProcess)
        return try finish(row.id, token: token, to: .stopped, reason: "PID 1 was gone") { row in
            row.initProcess = nil
        }
    }

    // MARK: - Stop

    /// Seconds a graceful stop gives the sandbox's processes after SIGTERM (Docker's default).
    public static let stopGrace: Double = 10

    /// Stops a started sandbox: its processes are asked to end (SIGTERM) and get
    /// `SandboxManager.stopGrace` seconds, then every process left is killed (memory cleared), the
    /// filesystem kept; `force` kills at once (Daytona's `stop(force=True)`). An ephemeral
    /// sandbox is deleted instead and comes back `destroyed`.
    public func stop(_ idOrName: String, force: Bool = false, organizationId: String? = nil) async throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        switch current.sandboxState {
        case .stopped, .stopping: return Sandbox(current)
        case .started, .paused: break
        default: throw Self.conflict(current, operation: "stopped")
        }
        // Frozen processes cannot handle SIGTERM: a paused sandbox is killed at once.
        let grace = force || current.sandboxState == .paused ? 0 : Self.stopGrace
        var (row, token) = try begin(
            current.id, from: [.started, .paused], to: .stopping, operation: "stopped", reason: force ? "force stop" : "stop")
        let machine = try Self.machine(row)
        do {
            try await driver.stop(machine, initProcess: row.initProcess, grace: grace)
            Failpoint.hit("stop.after-kill")
        } catch {
            fail(row.id, token: token, error, recoverable: true)
            throw error
        }
        row = try finish(row.id, token: token, to: .stopped, reason: "stopped") { row in
            row.initProcess = nil
        }
        if row.autoDelete == 0 {
            return try await destroy(row, reason: "ephemeral: deleted on stop")
        }
        return Sandbox(row)
    }

    // MARK: - Archive

    /// Moves a stopped sandbox's filesystem to the object store and frees its disk. Returns at
    /// once in `archiving` (as Daytona's archive does); the work runs in the background.
    public func archive(_ idOrName: String, organizationId: String? = nil) throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        switch current.sandboxState {
        case .archived, .archiving: return Sandbox(current)
        case .stopped:
            if current.autoDelete == 0 {
                throw AtollError(.invalidArgument, "sandbox \(current.id) is ephemeral: ephemeral sandboxes cannot be archived")
            }
        default: throw Self.conflict(current, operation: "archived")
        }
        let (row, token) = try begin(current.id, from: [.stopped], to: .archiving, operation: "archived", reason: "archive")
        let machine = try Self.machine(row)
        let cancellation = Cancellation()
        let task = Task { await self.runArchive(row.id, token: token, machine: machine, cancellation: cancellation) }
        background[row.id] = (task, cancellation)
        return Sandbox(row)
    }

    func runArchive(_ id: String, token: String, machine: SandboxMachine, cancellation: Cancellation) async {
        defer { background[id] = nil }
        do {
            let archive = try await driver.archive(machine, cancellation: cancellation)
            Failpoint.hit("archive.after-write")
            if cancellation.isCancelled { throw AtollError(.conflict, "archive cancelled") }
            try finish(id, token: token, to: .archived, reason: "archived (\(archive.bytes) bytes)") { row in
                row.archivePath = archive.path
                row.archiveBytes = Int64(archive.bytes)
                row.archiveSHA256 = archive.sha256
            }
            Failpoint.hit("archive.after-state")
            // The archive is durable and recorded; only now does the disk go.
            try? await driver.removeDisk(machine)
        } catch {
            if cancellation.isCancelled {
                // A start (or delete) took over: the disk is untouched, so back to stopped.
                _ = try? finish(id, token: token, to: .stopped, reason: "archive cancelled")
            } else {
                fail(id, token: token, error, recoverable: true)
            }
        }
    }

    /// Waits until no archive of this process is running for the sandbox (tests, shutdown).
    public func waitForBackgroundWork(_ idOrName: String) async throws {
        await awaitBackground(try row(idOrName).id)
    }

    // MARK: - Recover

    /// Brings a sandbox in a recoverable `error` back to `started`: leftovers are cleaned up, a
    /// missing disk is restored from the archive or made anew, and the sandbox starts.
    public func recover(_ idOrName: String, organizationId: String? = nil) async throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        guard current.sandboxState == .error else {
            if current.sandboxState == .started { return Sandbox(current) }
            throw AtollError(.conflict, "sandbox \(current.id) is \(current.state), not in error: nothing to recover")
        }
        guard current.recoverable else {
            throw AtollError(.conflict, "sandbox \(current.id) is not recoverable: \(current.errorReason ?? "no reason recorded"); delete it")
        }
        try admit(AdmissionRequest(cpu: current.cpu, memoryGiB: current.memoryGiB, diskGiB: 0, newSandbox: false), organization: current.organizationId)
        var (row, token) = try begin(current.id, from: [.error], to: .starting, operation: "recovered", reason: "recover")
        var machine = try Self.machine(row)
        do {
            row = try withAddress(row)
            machine = try Self.machine(row)
            try await driver.stop(machine, initProcess: row.initProcess)
            if !driver.hasDisk(machine) {
                if let path = row.archivePath, let bytes = row.archiveBytes, let sha = row.archiveSHA256 {
                    try await driver.restore(machine, from: ArchiveInfo(path: path, bytes: UInt64(bytes), sha256: sha))
                } else {
                    try await driver.provision(machine)
                }
            }
            let started = try await driver.start(machine)
            if let path = row.archivePath { try? driver.removeArchive(path: path) }
            return Sandbox(
                try finish(row.id, token: token, to: .started, reason: "recovered") { row in
                    row.initProcess = started
                    row.archivePath = nil
                    row.archiveBytes = nil
                    row.archiveSHA256 = nil
                })
        } catch {
            try? await driver.stop(machine, initProcess: nil)
            fail(row.id, token: token, error, recoverable: true)
            throw error
        }
    }

    // MARK: - Resize

    /// Changes resources. CPU and memory may go up while started (applied live); the disk, or any
    /// decrease, only while stopped. The disk never shrinks.
    public func resize(
        _ idOrName: String, cpu: Int? = nil, memoryGiB: Int? = nil, diskGiB: Int? = nil,
        organizationId: String? = nil
    ) async throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        let old = current.resources
        let new = Resources(cpu: cpu ?? old.cpu, memoryGiB: memoryGiB ?? old.memoryGiB, diskGiB: diskGiB ?? old.diskGiB)
        try configuration.limits.validate(new)
        guard new.diskGiB >= old.diskGiB else {
            throw AtollError(.invalidArgument, "disk can only grow: sandbox \(current.id) has \(old.diskGiB) GiB, asked for \(new.diskGiB) GiB")
        }
        if new == old { return Sandbox(current) }
        switch current.sandboxState {
        case .started:
            if new.diskGiB != old.diskGiB {
                throw AtollError(.conflict, "sandbox \(current.id) is started: the disk can only be resized while stopped; stop it first")
            }
            if new.cpu < old.cpu || new.memoryGiB < old.memoryGiB {
                throw AtollError(.conflict, "sandbox \(current.id) is started: CPU and memory can only grow while it runs; stop it to lower them")
            }
        case .stopped: break
        default: throw Self.conflict(current, operation: "resized")
        }
        let wasStarted = current.sandboxState == .started
        // Only a running sandbox holds its vCPUs and memory; any sandbox with a disk holds it.
        try admit(
            AdmissionRequest(
                cpu: wasStarted ? max(0, new.cpu - old.cpu) : 0, memoryGiB: wasStarted ? max(0, new.memoryGiB - old.memoryGiB) : 0,
                diskGiB: max(0, new.diskGiB - old.diskGiB), newSandbox: false), organization: current.organizationId)
        let (row, token) = try begin(current.id, from: [wasStarted ? .started : .stopped], to: .resizing, operation: "resized", reason: "resize")
        var machine = try Self.machine(row)
        machine.resources = new
        do {
            if wasStarted {
                try await driver.updateLimits(machine)
            } else if new.diskGiB > old.diskGiB {
                try await driver.growDisk(machine)
            }
            Failpoint.hit("resize.after-apply")
        } catch {
            // Put the old limits back where they may have been partly applied.
            if wasStarted { try? await driver.updateLimits(try Self.machine(row)) }
            _ = try? finish(row.id, token: token, to: wasStarted ? .started : .stopped, reason: "resize failed: \(error)")
            throw error
        }
        return Sandbox(
            try finish(
                row.id, token: token, to: wasStarted ? .started : .stopped, reason: "resized to \(new.cpu) vCPU, \(new.memoryGiB) GiB, \(new.diskGiB) GiB disk"
            ) { row in
                row.cpu = new.cpu
                row.memoryGiB = new.memoryGiB
                row.diskGiB = new.diskGiB
            })
    }

    // MARK: - Delete

    /// Deletes a sandbox and everything of it: processes, cgroups, disk, archive, record. A delete
    /// during an archive cancels the archive. Returns the sandbox as `destroyed`.
    @discardableResult
    public func delete(_ idOrName: String, organizationId: String? = nil) async throws -> Sandbox {
        var current = try row(idOrName, organizationId: organizationId)
        if current.sandboxState == .archiving, let job = background[current.id] {
            job.cancellation.cancel()
            await job.task.value
            current = try row(current.id, organizationId: current.organizationId)
        }
        return try await destroy(current, reason: "delete")
    }

    /// Deletes every sandbox of the organization (test harnesses: deterministic cleanup).
    /// Returns how many were deleted; the first failure is thrown after trying all.
    @discardableResult
    public func deleteAll(organizationId: String? = nil) async throws -> Int {
        var deleted = 0
        var firstError: (any Error)?
        for sandbox in try list(organizationId: organizationId) {
            do {
                try await delete(sandbox.id.rawValue, organizationId: sandbox.organizationId)
                deleted += 1
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
        return deleted
    }

    func destroy(_ current: SandboxRow, reason: String, poolMember: String? = nil) async throws -> Sandbox {
        if current.sandboxState == .destroying, !ProcessRef.isRunning(pid: current.opPid, startTime: current.opStartTime) || current.opPid == me.pid {
            // A delete that died half-way (or is ours): finish it.
        } else if current.sandboxState.isTransitional {
            throw Self.conflict(current, operation: "deleted")
        }
        let allowed: Set<SandboxState> = [.started, .paused, .stopped, .archived, .error, .buildFailed, .destroying]
        let (row, token) = try begin(
            current.id, from: allowed, to: .destroying, operation: "deleted", reason: reason,
            poolMember: poolMember)
        let machine = try Self.machine(row)
        do {
            try await driver.destroy(machine)
            Failpoint.hit("delete.after-destroy")
            if let path = row.archivePath { try driver.removeArchive(path: path) }
            try database.delete(id: row.id, at: now)
        } catch {
            fail(row.id, token: token, error, recoverable: false)
            throw error
        }
        activity[row.id] = nil
        lastActivityFlush[row.id] = nil
        var gone = Sandbox(row)
        gone.state = .destroyed
        gone.initPid = nil
        _ = token
        return gone
    }

    // MARK: - Labels, intervals, activity

    /// Replaces the labels (stored exactly as given). The language label stays unless replaced.
    public func setLabels(_ idOrName: String, _ labels: [String: String], organizationId: String? = nil) throws -> Sandbox {
        try Naming.validateLabels(labels)
        if let language = labels[Language.labelKey] { _ = try Language(parsing: language) }
        return try change(idOrName, organizationId: organizationId) { $0.labels = StringMapColumn.encode(labels) }
    }

    /// Makes the sandbox's preview URLs answer without a token (or need one again).
    public func setPublic(_ idOrName: String, _ isPublic: Bool, organizationId: String? = nil) throws -> Sandbox {
        try change(idOrName, organizationId: organizationId) { $0.isPublic = isPublic }
    }

    /// Changes the environment later processes of the sandbox start with (Daytona's
    /// `update_env`): `unset` names are removed, then `set` is merged in. Running processes keep
    /// theirs.
    public func updateEnv(_ idOrName: String, set: [String: String], unset: [String], organizationId: String? = nil) throws -> Sandbox {
        try EnvironmentValidation.validate(set, field: "set")
        try EnvironmentValidation.validate(Dictionary(unset.map { ($0, "") }, uniquingKeysWith: { a, _ in a }), field: "unset")
        return try change(idOrName, organizationId: organizationId) { row in
            var env = StringMapColumn.decode(row.env)
            for name in unset { env[name] = nil }
            env.merge(set) { _, new in new }
            row.env = StringMapColumn.encode(env)
        }
    }

    public func setAutoStop(_ idOrName: String, minutes: Int, organizationId: String? = nil) throws -> Sandbox {
        try LifecycleIntervals.checkAutoStop(minutes)
        return try change(idOrName, organizationId: organizationId) { $0.autoStop = minutes }
    }

    public func setAutoArchive(_ idOrName: String, minutes: Int, organizationId: String? = nil) throws -> Sandbox {
        try LifecycleIntervals.checkAutoArchive(minutes)
        return try change(idOrName, organizationId: organizationId) { $0.autoArchive = minutes }
    }

    public func setAutoDelete(_ idOrName: String, minutes: Int, organizationId: String? = nil) throws -> Sandbox {
        try LifecycleIntervals.checkAutoDelete(minutes)
        return try change(idOrName, organizationId: organizationId) { $0.autoDelete = minutes }
    }

    /// Records activity (Daytona's last-activity ping): postpones auto-stop.
    public func touch(_ idOrName: String, organizationId: String? = nil) throws {
        let current = try row(idOrName, organizationId: organizationId)
        noteActivity(current.id)
    }

    func change(_ idOrName: String, organizationId: String?, _ body: @escaping (inout SandboxRow) -> Void) throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        guard current.sandboxState != .destroying else { throw Self.conflict(current, operation: "changed") }
        return Sandbox(try database.update(id: current.id, at: now) { body(&$0) }).withActivity(activity)
    }

    // MARK: - Toolbox

    /// Runs a process in a started sandbox (see `ExecRequest`). Counts as activity.
    public func exec(
        _ idOrName: String, _ request: ExecRequest, organizationId: String? = nil,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)? = nil
    ) async throws -> ExecResult {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        noteActivity(machine.id.rawValue)
        defer { noteActivity(machine.id.rawValue) }
        return try await driver.exec(machine, initProcess: process, request, onOutput: onOutput)
    }

    /// Starts a process the caller talks to while it runs (`input`), optionally on a terminal of
    /// `terminal`'s size; its output goes to `onOutput` as it comes. Counts as activity.
    public func startLive(
        _ idOrName: String, _ request: ExecRequest, terminal: TerminalSize?, input: LiveInput, organizationId: String? = nil,
        onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> LiveProcess {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        noteActivity(machine.id.rawValue)
        return try await driver.startLive(machine, initProcess: process, request, terminal: terminal, input: input, onOutput: onOutput)
    }

    /// Stores `code` in the sandbox to be run with `language`'s interpreter (default the sandbox's
    /// language), as `runCode` does: code run live. Remove it after the run (`StagedCode.remove`).
    public func prepareCode(
        _ idOrName: String, language: Language?, code: String, arguments: [String], organizationId: String? = nil
    ) async throws -> StagedCode {
        let current = try row(idOrName, organizationId: organizationId)
        let (machine, process) = try runningMachine(current.id, organizationId: organizationId)
        let language = language ?? Sandbox(current).language
        let runtime = try driver.languageRuntime(machine)
        let files = try driver.files(machine, initProcess: process, user: nil)
        return try await WorkPool.shared.run {
            try StagedCode.stage(code, language: language, arguments: arguments, runtime: runtime, files: files)
        }
    }

    /// Runs code with the sandbox's interpreter for `request.language`. Counts as activity.
    public func runCode(
        _ idOrName: String, _ request: CodeRequest, organizationId: String? = nil,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)? = nil
    ) async throws -> ExecResult {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        noteActivity(machine.id.rawValue)
        defer { noteActivity(machine.id.rawValue) }
        return try await driver.runCode(machine, initProcess: process, request, onOutput: onOutput)
    }

    /// Bytes the sandbox's disk occupies on the host.
    public func diskBytes(_ id: SandboxID) -> UInt64 { driver.diskBytes(id) }

    /// CPU, memory and task usage of a sandbox's cgroup (zero when it has none).
    public func usage(_ idOrName: String, organizationId: String? = nil) async throws -> CgroupUsage {
        try await driver.usage(try Self.machine(try row(idOrName, organizationId: organizationId)))
    }

    /// Whether `process` is still the PID 1 of sandbox `id`, which still runs (started, or paused:
    /// its processes are frozen, not gone). What the toolbox keeps per sandbox (sessions,
    /// terminals, interpreter contexts) is forgotten once this is false.
    nonisolated func isRunning(_ id: String, as process: InitProcess) -> Bool {
        guard let row = try? database.sandbox(id: id), row.initProcess == process else { return false }
        return [.started, .pausing, .paused, .resuming].contains(row.sandboxState)
    }

    func runningMachine(_ idOrName: String, organizationId: String?) throws -> (SandboxMachine, InitProcess) {
        let current = try row(idOrName, organizationId: organizationId)
        guard current.sandboxState == .started, let process = current.initProcess else {
            throw AtollError(.conflict, "sandbox \(current.id) is \(current.state): it must be started to run processes")
        }
        return (try Self.machine(current), process)
    }
}

extension SandboxManager {
    /// File access inside a started sandbox (as its user, unless `user` says otherwise). Counts as
    /// activity. Release the result soon: it holds the sandbox's root open.
    public func files(_ idOrName: String, user: String? = nil, organizationId: String? = nil) throws -> SandboxFiles {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        noteActivity(machine.id.rawValue)
        return try driver.files(machine, initProcess: process, user: user)
    }

    /// Records a sandbox that cannot be built (an image Atoll does not have): it is kept in
    /// `build_failed` with the reason, as Daytona does, so the caller sees the reason and can
    /// delete it.
    public func createFailedBuild(_ parameters: CreateParameters, reason: String) throws -> Sandbox {
        let plan = try createPlan(parameters, snapshotMustExist: false)
        let at = now
        let row = Self.newRow(plan, name: plan.name ?? plan.id.rawValue, state: .pendingBuild, at: at)
        try Naming.validateName(row.name)
        _ = try database.insert(
            row, idRangeStart: Int64(configuration.idRangeStart), idRangeSize: 65536,
            idRangeSlots: configuration.idRangeSlots, reason: "create from an image")
        return Sandbox(
            try database.update(id: row.id, reason: reason, at: at) { row in
                try Self.checkTable(from: row.sandboxState, to: .buildFailed, id: row.id)
                row.state = SandboxState.buildFailed.rawValue
                row.errorReason = reason
            })
    }

    /// The one builder of a new sandbox's record from a validated plan; what only a running
    /// create sets (owner, operation token, deadline, pool) the caller adds.
    static func newRow(_ plan: CreatePlan, name: String, state: SandboxState, at: Double) -> SandboxRow {
        var row = SandboxRow(
            id: plan.id.rawValue, organizationId: plan.organizationId, name: name,
            state: state.rawValue, errorReason: nil, recoverable: false, snapshot: plan.snapshot, user: plan.user,
            env: StringMapColumn.encode(plan.env), labels: StringMapColumn.encode(plan.labels),
            cpu: plan.resources.cpu, memoryGiB: plan.resources.memoryGiB, diskGiB: plan.resources.diskGiB, pidsMax: plan.pidsMax,
            autoStop: plan.intervals.autoStop, autoArchive: plan.intervals.autoArchive, autoDelete: plan.intervals.autoDelete,
            networkBlockAll: plan.network.blockAll, networkAllowList: plan.network.allowListText,
            uidBase: 0, uidCount: 0, address: nil, initPid: nil, initStartTime: nil,
            archivePath: nil, archiveBytes: nil, archiveSHA256: nil, ownerPid: nil, ownerStartTime: nil,
            opPid: nil, opStartTime: nil, opToken: nil, deadline: nil, createdAt: at, updatedAt: at, lastActivityAt: at)
        row.isPublic = plan.isPublic
        row.snapshotRef = plan.snapshotRef
        row.autoPause = plan.autoPause
        row.expiresAt = expiry(ttlMinutes: plan.ttlMinutes, at: at)
        return row
    }
}
