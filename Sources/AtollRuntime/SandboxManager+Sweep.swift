import AtollCore
import AtollLinux
import AtollSandbox
import AtollStore
import Foundation

/// What one sweep or reconciliation did, for logs and tests.
public struct SweepReport: Sendable, Equatable {
    public var stopped: [String] = []
    /// Paused after inactivity.
    public var paused: [String] = []
    public var archived: [String] = []
    public var deleted: [String] = []
    /// Transitions that passed their deadline and were moved to `error`.
    public var timedOut: [String] = []
    /// Half-done transitions of dead processes, put into a consistent state.
    public var reconciled: [String] = []
    /// Things no sandbox owns any more that were removed.
    public var orphansRemoved: [String] = []
    /// Host network changes worth telling an operator (forwarding enabled, stale links removed).
    public var network: [String] = []
    /// Operations that failed (they are retried on the next sweep).
    public var failures: [String] = []

    public init() {}
}

extension SandboxManager {
    // MARK: - Automated lifecycle

    /// Runs `sweep()` every `configuration.sweepInterval` seconds until `close()`.
    public func startSweeper() {
        guard sweeper == nil else { return }
        let service = SweeperService(runner: self)
        sweeper = Task { try? await service.run() }
    }

    /// One pass of the automated lifecycle, by the runner's clock:
    /// - a transition past its deadline becomes `error` (recoverable) with the reason;
    /// - auto-stop: started and inactive (no toolbox call, activity ping or state change) for
    ///   `autoStop` minutes (0 = never) → stopped, or deleted if ephemeral;
    /// - auto-delete: stopped for `autoDelete` minutes (-1 = never) → deleted;
    /// - auto-archive: stopped for `autoArchive` minutes (0 = 30 days) → archived;
    /// - a sandbox whose owning process (`atoll run`) is gone → deleted;
    /// - TTL: past its `expiresAt`, whatever its (settled) state → deleted;
    /// - auto-pause: started and inactive for `autoPause` minutes (0 = never), before auto-stop
    ///   would stop it → paused.
    /// Background processes in a sandbox do not count as activity.
    @discardableResult
    public func sweep() async -> SweepReport {
        var report = SweepReport()
        let at = now
        // Daytona's snapshots go inactive after 14 days unused; `activate` brings them back.
        snapshots.deactivateUnused(now: at)
        guard let rows = try? database.all() else { return report }
        for row in rows {
            let idle = at - lastActivity(row)
            do {
                if row.sandboxState.isTransitional, let deadline = row.deadline, at >= deadline {
                    try expire(row, at: at)
                    report.timedOut.append(row.id)
                } else if row.ownerPid != nil, !ProcessRef.isRunning(pid: row.ownerPid, startTime: row.ownerStartTime),
                    !row.sandboxState.isTransitional
                {
                    _ = try await destroy(row, reason: "its owner process \(row.ownerPid!) is gone")
                    report.deleted.append(row.id)
                } else if let expiresAt = row.expiresAt, at >= expiresAt, !row.sandboxState.isTransitional {
                    _ = try await destroy(row, reason: "its time to live ended")
                    report.deleted.append(row.id)
                } else if row.sandboxState == .started, row.autoPause > 0, idle >= Double(row.autoPause) * 60,
                    row.autoStop == 0 || row.autoPause < row.autoStop
                {
                    _ = try await pause(row.id, organizationId: row.organizationId)
                    report.paused.append(row.id)
                } else if row.sandboxState == .started, row.autoStop > 0, idle >= Double(row.autoStop) * 60 {
                    let result = try await stop(row.id, organizationId: row.organizationId)
                    if result.state == .destroyed {
                        report.deleted.append(row.id)
                    } else {
                        report.stopped.append(row.id)
                    }
                } else if row.sandboxState == .stopped, row.autoDelete >= 0, idle >= Double(row.autoDelete) * 60 {
                    _ = try await destroy(row, reason: "auto-delete after \(row.autoDelete) min")
                    report.deleted.append(row.id)
                } else if row.sandboxState == .stopped, row.autoDelete != 0,
                    idle >= Double(LifecycleIntervals(autoArchive: row.autoArchive).effectiveAutoArchive) * 60
                {
                    _ = try archive(row.id, organizationId: row.organizationId)
                    report.archived.append(row.id)
                }
            } catch {
                report.failures.append("\(row.id): \(error)")
            }
        }
        return report
    }

    /// A transition past its deadline: this process's own work is cancelled where it can be, and
    /// the sandbox goes to `error`, recoverable, with the reason. A late finish of the old
    /// transition is refused by its token.
    func expire(_ row: SandboxRow, at: Double) throws {
        if let job = background[row.id] { job.cancellation.cancel() }
        let seconds = Int(at - (row.deadline ?? at) + configuration.deadlines.seconds(for: row.sandboxState))
        let reason = "stuck in \(row.state) for \(seconds) s (deadline passed)"
        try database.update(id: row.id, reason: reason, at: at) { row in
            try Self.checkTable(from: row.sandboxState, to: .error, id: row.id)
            row.state = SandboxState.error.rawValue
            row.errorReason = reason
            row.recoverable = true
            row.opPid = nil
            row.opStartTime = nil
            row.opToken = nil
            row.deadline = nil
        }
    }

    // MARK: - Restart safety

    /// Puts every sandbox into a consistent state after a crash (of this or another process):
    ///
    /// | found | becomes |
    /// | --- | --- |
    /// | started, PID 1 alive | started (re-adopted by pid + start time) |
    /// | started, PID 1 gone | stopped (processes, mounts and loop device cleaned up) |
    /// | creating | error, recoverable ("interrupted while creating"); recover finishes it |
    /// | starting, stopping | stopped |
    /// | archiving | stopped (the disk is intact; a partial archive is removed) |
    /// | archived with a disk left | archived (the disk is removed) |
    /// | restoring | archived (the partial disk is removed; the archive is intact) |
    /// | resizing | started or stopped, with the recorded (old) resources re-applied |
    /// | destroying | deleted |
    ///
    /// A transition whose process is still running is left alone. Sandboxes whose owner process
    /// is gone are deleted, and cgroups, directories and archives no sandbox owns are removed.
    @discardableResult
    public func reconcile() async -> SweepReport {
        var report = SweepReport()
        let rows = (try? database.all()) ?? []
        for row in rows {
            do {
                if let note = try await reconcile(row) { report.reconciled.append("\(row.id): \(note)") }
            } catch {
                report.failures.append("\(row.id): \(error)")
            }
        }
        for row in (try? database.all()) ?? [] where row.ownerPid != nil && !ProcessRef.isRunning(pid: row.ownerPid, startTime: row.ownerStartTime) {
            if row.sandboxState.isTransitional && ProcessRef.isRunning(pid: row.opPid, startTime: row.opStartTime) { continue }
            do {
                _ = try await destroy(row, reason: "its owner process \(row.ownerPid!) is gone")
                report.deleted.append(row.id)
            } catch {
                report.failures.append("\(row.id): \(error)")
            }
        }
        let database = self.database
        report.orphansRemoved = await driver.removeOrphans { id in (try? database.sandbox(id: id.rawValue)) != nil }
        do {
            report.network = try await prepareNetwork()
        } catch {
            report.failures.append("sandbox networking: \(error)")
        }
        return report
    }

    func reconcile(_ row: SandboxRow) async throws -> String? {
        let state = row.sandboxState
        if state.isTransitional && ProcessRef.isRunning(pid: row.opPid, startTime: row.opStartTime) && row.opPid != me.pid {
            return nil  // another live process is doing it
        }
        let machine = try Self.machine(row)
        let initProcess = row.initProcess
        func settle(_ to: SandboxState, _ reason: String, _ change: @escaping (inout SandboxRow) -> Void = { _ in }) throws {
            // What changed happened while no runner watched: allocation periods end at their
            // last durable sample, so the time nobody saw is neither billed nor lost twice.
            try database.update(id: row.id, reason: reason, at: now, boundary: .lastSample) { r in
                try Self.checkTable(from: r.sandboxState, to: to, id: r.id)
                r.state = to.rawValue
                r.opPid = nil
                r.opStartTime = nil
                r.opToken = nil
                r.deadline = nil
                r.lastActivityAt = self.now
                change(&r)
            }
        }
        let clearInit: (inout SandboxRow) -> Void = { r in
            r.initProcess = nil
        }
        switch state {
        case .started, .paused:
            if let initProcess, initProcess.isRunning { return nil }
            try await driver.stop(machine, initProcess: initProcess)
            try database.update(id: row.id, reason: "PID 1 was gone when the runner started", at: now, boundary: .lastSample) { r in
                r.state = SandboxState.stopping.rawValue
            }
            try settle(.stopped, "PID 1 was gone when the runner started", clearInit)
            return "\(state.rawValue), PID 1 gone: stopped"
        case .pendingBuild:
            let reason = "the build was interrupted (the runner stopped); create the sandbox again"
            try settle(.buildFailed, reason) { r in r.errorReason = reason }
            return "interrupted build: build_failed"
        case .creating:
            try await driver.stop(machine, initProcess: initProcess)
            let reason = "interrupted while creating (the runner stopped)"
            try settle(.error, reason) { r in
                clearInit(&r)
                r.errorReason = reason
                r.recoverable = true
            }
            return "interrupted create: error (recoverable)"
        // A `where` binds to one pattern only, so each pattern has its own.
        case .pausing where initProcess?.isRunning == true, .resuming where initProcess?.isRunning == true:
            // Freezing and thawing are idempotent: finish what was asked (with PID 1 gone, the
            // sandbox is stopped like an interrupted start or stop, below).
            if state == .pausing {
                try await driver.pause(machine)
                try settle(.paused, "interrupted while pausing: paused")
            } else {
                try await driver.resume(machine)
                try settle(.started, "interrupted while resuming: started")
            }
            return "interrupted \(state.rawValue): finished"
        case .starting, .stopping, .pausing, .resuming:
            try await driver.stop(machine, initProcess: initProcess)
            try settle(.stopped, "interrupted while \(state.rawValue): stopped", clearInit)
            return "interrupted \(state.rawValue): stopped"
        case .archiving:
            try? driver.removeArchive(path: configuration.driver.archivePath(machine.id) + ".tmp")
            if row.archivePath == nil { try? driver.removeArchive(path: configuration.driver.archivePath(machine.id)) }
            try settle(.stopped, "interrupted while archiving: stopped (the disk is intact)")
            return "interrupted archive: stopped"
        case .archived:
            if driver.hasDisk(machine) {
                try await driver.removeDisk(machine)
                return "archived: leftover disk removed"
            }
            return nil
        case .restoring:
            try await driver.stop(machine, initProcess: initProcess)
            try await driver.removeDisk(machine)
            try settle(.archived, "interrupted while restoring: archived (the archive is intact)", clearInit)
            return "interrupted restore: archived"
        case .resizing:
            if let initProcess, initProcess.isRunning {
                try await driver.updateLimits(machine)
                try settle(.started, "interrupted while resizing: old resources kept")
                return "interrupted resize: started"
            }
            try await driver.stop(machine, initProcess: initProcess)
            try settle(.stopped, "interrupted while resizing: old resources kept", clearInit)
            return "interrupted resize: stopped"
        case .destroying:
            _ = try await destroy(row, reason: "finishing an interrupted delete")
            return "interrupted delete: deleted"
        default:
            return nil
        }
    }
}
