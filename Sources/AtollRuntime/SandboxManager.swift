public import AtollCore
import AtollLinux
public import AtollSandbox
public import AtollStore
import Foundation
import Glibc

/// The runner: Daytona's sandbox lifecycle on top of the sandbox driver.
///
/// Every lifecycle operation is a transition through `SandboxState`'s table: it is written to the
/// database (durably) as a transitional state before any work starts and as its final state only
/// after the work is done. The transitional state, stamped with the process doing the work and a
/// token, is the lock: a conflicting call gets a `conflict` error naming what is going on; a
/// deadline turns a stuck transition into `error`; a restarted runner finds half-done transitions
/// of dead processes and reconciles them (see `reconcile`).
public actor SandboxManager {
    public nonisolated let configuration: RuntimeConfiguration
    public nonisolated let driver: any SandboxDriving
    public nonisolated let database: SandboxDatabase
    public nonisolated let clock: any Clock
    /// Registered snapshots and the image store under them.
    public nonisolated let snapshots: SnapshotCatalog
    /// Bounds each organization's concurrent toolbox operations.
    public nonisolated let toolboxGate: ConcurrencyGate

    /// Background transitions of this process (archives), by sandbox id.
    var background: [String: (task: Task<Void, Never>, cancellation: Cancellation)] = [:]
    /// Activity seen since the last flush to the database, by sandbox id (seconds since 1970).
    var activity: [String: Double] = [:]
    var lastActivityFlush: [String: Double] = [:]
    var sweeper: Task<Void, Never>?
    /// The meter loop (daemon), the last compaction of usage samples, failed rounds.
    var meter: Task<Void, Never>?
    var lastCompaction: Double = 0
    public internal(set) var meterFailures = 0
    /// The warm pool's refill loop (daemon), its wake-up signal and counters per key.
    var poolTask: Task<Void, Never>?
    var poolWake: AsyncStream<Void>.Continuation?
    var poolCounters: [WarmPoolKey: WarmPoolCounters] = [:]

    /// This process, as recorded on the transitions it performs.
    nonisolated let me = ProcessRef.current()

    init(configuration: RuntimeConfiguration, driver: any SandboxDriving, database: SandboxDatabase, clock: any Clock) throws {
        self.snapshots = try SnapshotCatalog(configuration: configuration, database: database)
        self.configuration = configuration
        self.driver = driver
        self.database = database
        self.clock = clock
        self.toolboxGate = ConcurrencyGate(limit: configuration.toolboxConcurrency)
        snapshots.useBuildSteps(self)
    }

    /// Opens the runner on `configuration.dataDirectory`, reconciling whatever a previous process
    /// left half-done. `driver` defaults to the real one (which needs root).
    public static func open(
        configuration: RuntimeConfiguration, driver: (any SandboxDriving)? = nil,
        clock: any Clock = SystemClock(), reconcile: Bool = true
    ) async throws -> SandboxManager {
        try FileManager.default.createDirectory(
            atPath: configuration.dataDirectory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o711])
        try SettingsRecord.check(configuration)
        let driver = try driver ?? SandboxDriver(configuration: configuration.driver)
        let database = try SandboxDatabase(path: configuration.databasePath)
        let manager = try SandboxManager(configuration: configuration, driver: driver, database: database, clock: clock)
        if reconcile {
            await manager.reconcile()
            await manager.resumeImageWork()
        }
        return manager
    }

    nonisolated var now: Double { clock.now().timeIntervalSince1970 }

    // MARK: - Lookup

    /// A sandbox by id or name.
    public func get(_ idOrName: String, organizationId: String? = nil) throws -> Sandbox {
        Sandbox(try row(idOrName, organizationId: organizationId), lastActivity: nil).withActivity(activity)
    }

    /// A sandbox by id, in whichever organization it belongs to: for the preview proxy, where a
    /// token (not a key) proves access. Nil when there is none (or it is destroyed).
    public nonisolated func sandbox(id: SandboxID) throws -> Sandbox? {
        guard let row = try database.sandbox(id: id.rawValue), row.sandboxState != .destroyed else { return nil }
        return Sandbox(row)
    }

    /// Sandboxes of an organization whose labels include all of `labels`, oldest first.
    public func list(labels: [String: String] = [:], organizationId: String? = nil) throws -> [Sandbox] {
        let org = organizationId ?? configuration.organizationId
        return try database.all()
            .filter { $0.organizationId == org && $0.sandboxState != .destroyed }
            .map { Sandbox($0).withActivity(activity) }
            .filter { sandbox in labels.allSatisfy { sandbox.labels[$0.key] == $0.value } }
    }

    /// The state history of a sandbox, oldest first.
    public func history(_ idOrName: String, organizationId: String? = nil) throws -> [TransitionRow] {
        try database.history(id: try row(idOrName, organizationId: organizationId).id)
    }

    nonisolated func row(_ idOrName: String, organizationId: String? = nil) throws -> SandboxRow {
        guard !idOrName.isEmpty, idOrName.utf8.count <= 128 else {
            throw AtollError(.invalidArgument, "invalid sandbox id or name \"\(idOrName.prefix(64))\"")
        }
        let org = organizationId ?? configuration.organizationId
        guard let row = try database.sandbox(idOrName: idOrName, organizationId: org) else {
            throw AtollError(.notFound, "sandbox \(idOrName.prefix(64)) not found")
        }
        return row
    }

    static func machine(_ row: SandboxRow) throws -> SandboxMachine {
        SandboxMachine(
            id: try SandboxID(row.id), snapshot: row.snapshotRef ?? row.snapshot,
            resources: row.resources, pidsMax: row.pidsMax,
            ids: row.ids, env: StringMapColumn.decode(row.env), user: row.user,
            network: row.address.flatMap { IPv4Address($0) }.map {
                MachineNetwork(address: $0, policy: row.networkPolicy)
            }
        )
    }

    /// The row with an address on the sandbox subnet (assigned on first need, kept until delete).
    func withAddress(_ row: SandboxRow) throws -> SandboxRow {
        guard let subnet = configuration.driver.network?.subnet else { return row }
        var row = row
        row.address = try database.assignAddress(id: row.id, subnet: subnet, at: now).description
        return row
    }

    // MARK: - Transitions

    /// Moves a sandbox from one of `allowed` into the transitional state `state`, durably, and
    /// marks this process as doing the work. Returns the row and the transition's token.
    /// `poolMember`: only while the row is still that warm pool member (its `pool` value), checked
    /// in the same transaction — the pool's upkeep never takes a sandbox a claim just handed out.
    func begin(
        _ id: String, from allowed: Set<SandboxState>, to state: SandboxState, operation: String,
        reason: String? = nil, poolMember: String? = nil
    ) throws -> (SandboxRow, String) {
        let token = UUID().uuidString
        let at = now
        do {
            let row = try database.update(id: id, expecting: allowed, reason: reason ?? operation, at: at) { row in
                if let poolMember, row.pool != poolMember {
                    throw AtollError(.conflict, "sandbox \(id) is no longer the warm pool member it was")
                }
                try Self.checkTable(from: row.sandboxState, to: state, id: id)
                row.state = state.rawValue
                row.opPid = me.pid
                row.opStartTime = Int64(me.startTime)
                row.opToken = token
                row.deadline = at + configuration.deadlines.seconds(for: state)
                row.lastActivityAt = at
            }
            return (row, token)
        } catch let mismatch as StateMismatch {
            throw Self.conflict(mismatch.row, operation: operation)
        }
    }

    /// Every state change goes through `SandboxState`'s one transition table.
    static func checkTable(from: SandboxState, to: SandboxState, id: String) throws {
        guard from.canTransition(to: to) else {
            throw AtollError(.internal, "sandbox \(id): \(from.rawValue) → \(to.rawValue) is not in the transition table")
        }
    }

    /// The error for an operation the sandbox's state does not allow.
    static func conflict(_ row: SandboxRow, operation: String) -> AtollError {
        let state = row.sandboxState
        if state.isTransitional {
            return AtollError(.conflict, "sandbox \(row.id) is \(state.rawValue); \(operation) has to wait until that finishes")
        }
        if state == .error {
            let reason = row.errorReason.map { ": \($0)" } ?? ""
            return AtollError(.conflict, "sandbox \(row.id) is in error\(reason); recover or delete it")
        }
        return AtollError(.conflict, "sandbox \(row.id) is \(state.rawValue): it cannot be \(operation)")
    }

    /// Completes the transition `token` with the final `state`. If the transition is no longer
    /// this one (it ran past its deadline and was declared stuck), nothing is written.
    @discardableResult
    func finish(
        _ id: String, token: String, to state: SandboxState, reason: String? = nil,
        _ change: (inout SandboxRow) -> Void = { _ in }
    ) throws -> SandboxRow {
        let at = now
        return try database.update(id: id, reason: reason, at: at) { row in
            guard row.opToken == token else {
                throw AtollError(.conflict, "sandbox \(id): the \(row.state) transition was taken over (it passed its deadline)")
            }
            try Self.checkTable(from: row.sandboxState, to: state, id: id)
            row.state = state.rawValue
            row.opPid = nil
            row.opStartTime = nil
            row.opToken = nil
            row.deadline = nil
            row.lastActivityAt = at
            if state != .error {
                row.errorReason = nil
                row.recoverable = false
            }
            change(&row)
        }
    }

    /// Ends the transition `token` in `error` with the error's message as the reason.
    func fail(_ id: String, token: String, _ error: any Error, recoverable: Bool) {
        let message = (error as? AtollError)?.description ?? "\(error)"
        _ = try? finish(id, token: token, to: .error, reason: message) { row in
            row.errorReason = message
            row.recoverable = recoverable
        }
    }

    /// Marks activity (a toolbox call, an explicit ping): it postpones auto-stop. Written to the
    /// database at most every `activityFlushInterval` seconds per sandbox.
    func noteActivity(_ id: String) {
        let at = now
        activity[id] = at
        if at - (lastActivityFlush[id] ?? 0) >= configuration.activityFlushInterval {
            lastActivityFlush[id] = at
            _ = try? database.update(id: id, at: at) { $0.lastActivityAt = max($0.lastActivityAt, at) }
        }
    }

    /// The most recent activity of a sandbox: state changes (in the row) and toolbox calls.
    func lastActivity(_ row: SandboxRow) -> Double { max(row.lastActivityAt, activity[row.id] ?? 0) }

    /// Waits for this process's background transition of `id` (an archive) to end.
    func awaitBackground(_ id: String) async {
        if let job = background[id] { await job.task.value }
    }

    // MARK: - Shutdown

    /// Stops the sweeper and waits for background transitions; sandboxes keep running.
    public func close() async {
        sweeper?.cancel()
        sweeper = nil
        meter?.cancel()
        meter = nil
        // The refill loop finishes the member it is building, then ends.
        poolTask?.cancel()
        poolWake?.finish()
        poolWake = nil
        await poolTask?.value
        poolTask = nil
        for (id, at) in activity { _ = try? database.update(id: id, at: now) { $0.lastActivityAt = max($0.lastActivityAt, at) } }
        for job in background.values { await job.task.value }
    }
}

extension Sandbox {
    func withActivity(_ activity: [String: Double]) -> Sandbox {
        var copy = self
        if let at = activity[id.rawValue], at > lastActivityAt.timeIntervalSince1970 { copy.lastActivityAt = Date(timeIntervalSince1970: at) }
        return copy
    }
}

/// A process identified by pid and start time.
struct ProcessRef: Sendable, Hashable {
    var pid: Int32
    var startTime: UInt64

    static func current() -> ProcessRef {
        let pid = getpid()
        return ProcessRef(pid: pid, startTime: ProcFS.startTime(pid) ?? 0)
    }

    /// Whether the process a row names is still running.
    static func isRunning(pid: Int32?, startTime: Int64?) -> Bool {
        guard let pid, let startTime else { return false }
        return ProcFS.isRunning(pid, startTime: UInt64(startTime))
    }
}
