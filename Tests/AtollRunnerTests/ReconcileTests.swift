import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Glibc
import Testing

/// Restart safety: rows left in transitional states by a process that died are put into the
/// documented consistent state by the next runner.
@Suite("runner: reconciliation after a crash, on a fake driver")
struct ReconcileTests {
    /// Leaves sandbox `id` in `state` as if a process that no longer exists had been working on it.
    func crash(_ f: RunnerFixture, _ id: String, in state: SandboxState, _ change: (inout SandboxRow) -> Void = { _ in }) throws {
        try f.manager.database.update(id: id, at: 0) { row in
            row.state = state.rawValue
            row.opPid = Int32.max - 11  // no such process
            row.opStartTime = 1
            row.opToken = "dead"
            row.deadline = 1e12
            change(&row)
        }
    }

    @Test(
        "each half-done transition ends in its documented state",
        arguments: [
            (SandboxState.creating, SandboxState.error), (.starting, .stopped), (.stopping, .stopped), (.archiving, .stopped),
            (.restoring, .archived), (.resizing, .started), (.pausing, .paused), (.resuming, .started),
        ])
    func transitional(found: SandboxState, becomes: SandboxState) async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            try crash(f, s.id.rawValue, in: found)
            let restarted = try await f.reopen()
            let after = try await restarted.get(s.id.rawValue)
            #expect(after.state == becomes)
            if becomes == .error { #expect(after.recoverable && after.errorReason?.contains("interrupted") == true) }
            let last = try await restarted.history(s.id.rawValue).last
            #expect(last?.reason?.isEmpty == false, "the reconciliation is recorded with its reason")
            await restarted.close()
        }
    }

    @Test("paused, pausing or resuming with PID 1 gone becomes stopped", arguments: [SandboxState.paused, .pausing, .resuming])
    func frozenWithDeadInit(found: SandboxState) async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            try crash(f, s.id.rawValue, in: found) { row in row.initPid = Int32.max - 3 }
            let restarted = try await f.reopen()
            #expect(try await restarted.get(s.id.rawValue).state == .stopped)
            #expect(f.driver.calls("pause").isEmpty && f.driver.calls("resume").isEmpty, "nothing is frozen or thawed for a dead PID 1")
            await restarted.close()
        }
    }

    @Test("a half-done delete is finished")
    func destroying() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            try crash(f, s.id.rawValue, in: .destroying)
            let restarted = try await f.reopen()
            await expectError(.notFound, containing: "not found") { try await restarted.get(s.id.rawValue) }
            #expect(f.driver.calls("destroy") == ["destroy \(s.id)"])
            await restarted.close()
        }
    }

    @Test("started with a dead PID 1 becomes stopped; with a live one it is adopted untouched")
    func started() async throws {
        try await withRunner { f in
            let dead = try await f.manager.create(CreateParameters(name: "dead"))
            let alive = try await f.manager.create(CreateParameters(name: "alive"))
            try f.manager.database.update(id: dead.id.rawValue, at: 0) { row in row.initPid = Int32.max - 3 }
            let stops = f.driver.calls("stop").count
            let restarted = try await f.reopen()
            #expect(try await restarted.get("dead").state == .stopped)
            #expect(try await restarted.get("alive").state == .started)
            #expect(f.driver.calls("stop").count == stops + 1, "only the dead one was cleaned up")
            _ = alive
            await restarted.close()
        }
    }

    @Test("an archived sandbox that still has its disk loses the disk; a transition of a live process is left alone")
    func archivedAndLive() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            _ = try await f.manager.stop(s.id.rawValue)
            _ = try await f.manager.archive(s.id.rawValue)
            try await f.manager.waitForBackgroundWork(s.id.rawValue)
            try await f.driver.provision(
                SandboxMachine(id: s.id, snapshot: "default", resources: .defaults, pidsMax: 64, ids: s.ids, env: [:], user: "sandbox"))
            let busy = try await f.manager.create(CreateParameters(name: "busy"))
            try f.manager.database.update(id: busy.id.rawValue, at: 0) { row in
                row.state = SandboxState.stopping.rawValue
                row.opPid = getpid()  // this (live) process is "working" on it
                row.opStartTime = Int64(ProcFS.startTime(getpid()) ?? 0)
            }
            let other = try await SandboxManager.open(configuration: f.configuration, driver: f.driver, clock: f.clock)
            #expect(!f.driver.diskExists(s.id))
            #expect(try await other.get(s.id.rawValue).state == .archived)
            await other.close()
        }
    }
}
