import AtollCore
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Glibc
import Testing

/// The automated lifecycle, minute-long intervals passed in milliseconds with a manual clock.
@Suite("runner: sweeper on a fake driver and a manual clock")
struct SweeperTests {
    @Test("auto-stop after the idle interval; toolbox calls and pings postpone it; background processes do not")
    func autoStop() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            let id = s.id.rawValue
            f.clock.advance(minutes: 14)
            #expect(await f.manager.sweep().stopped.isEmpty)
            _ = try await f.manager.exec(id, ExecRequest(command: .shell("sleep 1000 &")))
            f.clock.advance(minutes: 14)
            #expect(await f.manager.sweep().stopped.isEmpty, "the exec 14 minutes ago counts as activity")
            try await f.manager.touch(id)
            f.clock.advance(minutes: 14.9)
            #expect(await f.manager.sweep().stopped.isEmpty)
            f.clock.advance(minutes: 0.2)
            #expect(await f.manager.sweep().stopped == [id], "a process left running in the sandbox is not activity")
            #expect(try await f.manager.get(id).state == .stopped)
        }
    }

    @Test("auto-stop 0 never stops")
    func autoStopNever() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters(intervals: LifecycleIntervals(autoStop: 0)))
            f.clock.advance(minutes: 60 * 24 * 365)
            #expect(await f.manager.sweep().stopped.isEmpty)
            #expect(try await f.manager.get(s.id.rawValue).state == .started)
        }
    }

    @Test("an ephemeral sandbox is deleted when auto-stop stops it")
    func ephemeralAutoStop() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters(intervals: LifecycleIntervals(autoStop: 5), ephemeral: true))
            f.clock.advance(minutes: 6)
            #expect(await f.manager.sweep().deleted == [s.id.rawValue])
            #expect(try await f.manager.list().isEmpty)
        }
    }

    @Test("auto-archive after 7 days stopped by default; 0 means 30 days")
    func autoArchive() async throws {
        try await withRunner { f in
            let week = try await f.manager.create(CreateParameters(name: "week"))
            let month = try await f.manager.create(CreateParameters(name: "month", intervals: LifecycleIntervals(autoArchive: 0)))
            _ = try await f.manager.stop("week")
            _ = try await f.manager.stop("month")
            f.clock.advance(minutes: 7 * 24 * 60 - 1)
            #expect(await f.manager.sweep().archived.isEmpty)
            f.clock.advance(minutes: 2)
            #expect(await f.manager.sweep().archived == [week.id.rawValue])
            try await f.manager.waitForBackgroundWork("week")
            #expect(try await f.manager.get("week").state == .archived)
            f.clock.advance(minutes: 23 * 24 * 60)
            #expect(await f.manager.sweep().archived == [month.id.rawValue])
            try await f.manager.waitForBackgroundWork("month")
        }
    }

    @Test("auto-delete after its interval stopped; -1 never; a started sandbox is not deleted")
    func autoDelete() async throws {
        try await withRunner { f in
            let gone = try await f.manager.create(CreateParameters(name: "gone", intervals: LifecycleIntervals(autoStop: 0, autoDelete: 60)))
            _ = try await f.manager.create(CreateParameters(name: "kept", intervals: LifecycleIntervals(autoDelete: -1)))
            _ = try await f.manager.create(CreateParameters(name: "running", intervals: LifecycleIntervals(autoStop: 0, autoDelete: 1)))
            _ = try await f.manager.stop("gone")
            _ = try await f.manager.stop("kept")
            f.clock.advance(minutes: 59)
            #expect(await f.manager.sweep().deleted.isEmpty)
            f.clock.advance(minutes: 2)
            #expect(await f.manager.sweep().deleted == [gone.id.rawValue])
            #expect(try await f.manager.list().map(\.name).sorted() == ["kept", "running"])
        }
    }

    @Test("a sandbox whose owner process is gone is deleted")
    func abandoned() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters(ownedByCurrentProcess: true))
            #expect(await f.manager.sweep().deleted.isEmpty, "its owner (this process) is alive")
            // As if the owner had been killed: a pid that runs no process.
            try f.manager.database.update(id: s.id.rawValue, at: 0) { row in
                row.ownerPid = Int32.max - 7
                row.ownerStartTime = 1
            }
            #expect(await f.manager.sweep().deleted == [s.id.rawValue])
        }
    }
}

extension SweeperTests {
    @Test("a snapshot unused for 14 days goes inactive; a sandbox cannot be made from it until it is activated")
    func snapshotsGoInactive() async throws {
        try await withRunner { f in
            let now = Date().timeIntervalSince1970
            let record = SnapshotRecord(
                id: UUID().uuidString.lowercased(), organizationId: f.manager.configuration.organizationId, name: "old_one", state: "active",
                imageName: "python:3.12", dockerfile: nil, entrypoint: nil, cpu: 1, memoryGiB: 1, diskGiB: 3, createdAt: now - 20 * 86400,
                updatedAt: now - 20 * 86400, lastUsedAt: now - 15 * 86400)
            try f.manager.database.insertSnapshot(record)
            var fresh = record
            fresh.id = UUID().uuidString.lowercased()
            fresh.name = "fresh"
            fresh.lastUsedAt = now - 13 * 86400
            try f.manager.database.insertSnapshot(fresh)
            f.clock.set(Date(timeIntervalSince1970: now))
            _ = await f.manager.sweep()
            #expect(try f.manager.snapshots.get("old_one", organizationId: nil).state == "inactive")
            #expect(try f.manager.snapshots.get("fresh", organizationId: nil).state == "active")
            await #expect(throws: AtollError.self) { try await f.manager.create(CreateParameters(snapshot: "old_one")) }
            do {
                _ = try await f.manager.create(CreateParameters(snapshot: "old_one"))
            } catch let error as AtollError {
                #expect(error.code == .conflict && error.message.contains("activate it"), "\(error.message)")
            }
            #expect(try f.manager.snapshots.activate("old_one", organizationId: nil).state == "active")
            #expect(throws: AtollError.self) { try f.manager.snapshots.activate("old_one", organizationId: nil) }
        }
    }
}
