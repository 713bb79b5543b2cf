import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Glibc
import Testing

@Suite("runner: state machine on a fake driver")
struct StateMachineTests {
    @Test("create applies Daytona's defaults and records its history")
    func createDefaults() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            #expect(s.state == .started)
            #expect(s.name == s.id.rawValue)
            #expect(s.resources == Resources(cpu: 1, memoryGiB: 1, diskGiB: 3))
            #expect(s.intervals == LifecycleIntervals(autoStop: 15, autoArchive: 10080, autoDelete: -1))
            #expect(s.labels == ["code-toolbox-language": "python"])
            #expect(s.language == .python)
            #expect(s.user == "sandbox")
            #expect(s.initPid == getpid())
            #expect(s.ids.base >= 1 << 28 && s.ids.count == 65536)
            let history = try await f.manager.history(s.id.rawValue)
            #expect(history.map(\.toState) == ["creating", "started"])
            #expect(f.driver.calls == ["provision \(s.id)", "start \(s.id)"])
        }
    }

    @Test("create keeps labels exactly, sets the language, and gives each sandbox its own id range")
    func createParameters() async throws {
        try await withRunner { f in
            let a = try await f.manager.create(
                CreateParameters(
                    name: "my-box", labels: ["Team": "A b", "x": ""], env: ["K": "v"], language: .typescript, user: "root",
                    resources: Resources(cpu: 4, memoryGiB: 8, diskGiB: 10), intervals: LifecycleIntervals(autoStop: 0, autoArchive: 0, autoDelete: 30),
                    network: NetworkPolicy(blockAll: false, allowList: ["10.0.0.0/8", "192.168.1.0/24"])))
            #expect(a.labels == ["Team": "A b", "x": "", "code-toolbox-language": "typescript"])
            #expect(a.env == ["K": "v"] && a.user == "root" && a.name == "my-box")
            #expect(a.intervals.autoStop == 0 && a.intervals.effectiveAutoArchive == 43200 && a.intervals.autoDelete == 30)
            #expect(a.network.allowListText == "10.0.0.0/8,192.168.1.0/24")
            let b = try await f.manager.create(CreateParameters(labels: ["code-toolbox-language": "javascript"]))
            #expect(b.language == .javascript)
            #expect(a.ids.base != b.ids.base)
            let eph = try await f.manager.create(CreateParameters(ephemeral: true))
            #expect(eph.intervals.autoDelete == 0)
        }
    }

    @Test("bad create parameters are refused with the field named, and leave nothing")
    func createValidation() async throws {
        try await withRunner { f in
            await expectError(.invalidArgument, containing: "memory 9 exceeds the per-sandbox maximum of 8 GiB") {
                try await f.manager.create(CreateParameters(resources: Resources(cpu: 1, memoryGiB: 9, diskGiB: 3)))
            }
            await expectError(.invalidArgument, containing: "invalid name") { try await f.manager.create(CreateParameters(name: "../etc")) }
            await expectError(.invalidArgument, containing: "unknown language \"cobol\"") {
                try await f.manager.create(CreateParameters(labels: ["code-toolbox-language": "cobol"]))
            }
            await expectError(.invalidArgument, containing: "control character") { try await f.manager.create(CreateParameters(labels: ["a": "x\ny"])) }
            await expectError(.invalidArgument, containing: "autoArchiveInterval") {
                try await f.manager.create(CreateParameters(intervals: LifecycleIntervals(autoArchive: 50000)))
            }
            await expectError(.invalidArgument, containing: "autoDeleteInterval") {
                try await f.manager.create(CreateParameters(intervals: LifecycleIntervals(autoDelete: -2)))
            }
            await expectError(.invalidArgument, containing: "\"10.0.0.300/8\" is not an IPv4 CIDR") {
                try await f.manager.create(CreateParameters(network: NetworkPolicy(allowList: ["10.0.0.300/8"])))
            }
            await expectError(.invalidArgument, containing: "variable name") { try await f.manager.create(CreateParameters(env: ["1X": "y"])) }
            await expectError(.notFound, containing: "snapshot \"nope\" not found") { try await f.manager.create(CreateParameters(snapshot: "nope")) }
            #expect(try await f.manager.list().isEmpty)
            #expect(f.driver.calls.isEmpty)
            _ = try await f.manager.create(CreateParameters(name: "taken"))
            await expectError(.nameTaken, containing: "a sandbox named \"taken\" already exists") {
                try await f.manager.create(CreateParameters(name: "taken"))
            }
        }
    }

    @Test("get by id or name; list filters by labels and organization")
    func lookup() async throws {
        try await withRunner { f in
            let a = try await f.manager.create(CreateParameters(name: "alpha", labels: ["suite": "e2e", "n": "1"]))
            _ = try await f.manager.create(CreateParameters(name: "beta", labels: ["suite": "e2e", "n": "2"]))
            _ = try await f.manager.create(CreateParameters(name: "gamma", labels: ["suite": "unit"]))
            let other = try await f.manager.create(CreateParameters(name: "alpha", organizationId: "org-2"))
            #expect(try await f.manager.get("alpha").id == a.id)
            #expect(try await f.manager.get(a.id.rawValue).name == "alpha")
            #expect(try await f.manager.get("alpha", organizationId: "org-2").id == other.id)
            await expectError(.notFound, containing: "not found") { try await f.manager.get(other.id.rawValue) }
            #expect(try await f.manager.list(labels: ["suite": "e2e"]).map(\.name) == ["alpha", "beta"])
            #expect(try await f.manager.list(labels: ["suite": "e2e", "n": "2"]).map(\.name) == ["beta"])
            #expect(try await f.manager.list().count == 3)
            #expect(try await f.manager.list(organizationId: "org-2").map(\.name) == ["alpha"])
        }
    }

    @Test("stop and start; both are no-ops when already there")
    func stopStart() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            #expect(try await f.manager.stop(s.id.rawValue).state == .stopped)
            #expect(try await f.manager.stop(s.id.rawValue).state == .stopped)
            #expect(try await f.manager.start(s.id.rawValue).state == .started)
            #expect(try await f.manager.start(s.id.rawValue).state == .started)
            #expect(f.driver.calls("start").count == 2)
            #expect(f.driver.calls("stop").count == 1)
            #expect(try await f.manager.history(s.id.rawValue).map(\.toState) == ["creating", "started", "stopping", "stopped", "starting", "started"])
        }
    }

    @Test("an ephemeral sandbox is deleted when it stops")
    func ephemeral() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters(ephemeral: true))
            #expect(try await f.manager.stop(s.id.rawValue).state == .destroyed)
            await expectError(.notFound, containing: "not found") { try await f.manager.get(s.id.rawValue) }
            // A stopped sandbox made ephemeral afterwards cannot be archived either.
            let later = try await f.manager.create(CreateParameters())
            _ = try await f.manager.stop(later.id.rawValue)
            _ = try await f.manager.setAutoDelete(later.id.rawValue, minutes: 0)
            await expectError(.invalidArgument, containing: "ephemeral sandboxes cannot be archived") { try await f.manager.archive(later.id.rawValue) }
        }
    }

    @Test("archive runs in the background; start restores; the disk and the archive come and go")
    func archiveAndRestore() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            await expectError(.conflict, containing: "cannot be archived") { try await f.manager.archive(s.id.rawValue) }
            _ = try await f.manager.stop(s.id.rawValue)
            #expect(try await f.manager.archive(s.id.rawValue).state == .archiving)
            try await f.manager.waitForBackgroundWork(s.id.rawValue)
            let archived = try await f.manager.get(s.id.rawValue)
            #expect(archived.state == .archived && archived.archiveBytes == 1234)
            #expect(!f.driver.diskExists(s.id) && f.driver.hasArchive(s.id))
            let started = try await f.manager.start(s.id.rawValue)
            #expect(started.state == .started && started.archiveBytes == nil)
            #expect(f.driver.diskExists(s.id) && !f.driver.hasArchive(s.id))
            #expect(try await f.manager.history(s.id.rawValue).map(\.toState).suffix(4) == ["archiving", "archived", "restoring", "started"])
        }
    }

    @Test("stop, archive (not waited for), start: the start cancels the archive and succeeds")
    func stopArchiveStart() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            _ = try await f.manager.stop(s.id.rawValue)
            f.driver.close("archive")
            #expect(try await f.manager.archive(s.id.rawValue).state == .archiving)
            try await eventually("the archive to begin") { !f.driver.calls("archive").isEmpty }
            let started = try await f.manager.start(s.id.rawValue)
            #expect(started.state == .started)
            #expect(!f.driver.hasArchive(s.id), "the archive never completed")
            let states = try await f.manager.history(s.id.rawValue).map(\.toState)
            #expect(Array(states.suffix(4)) == ["archiving", "stopped", "starting", "started"])
        }
    }

    @Test("a call that conflicts with a transition in progress gets a conflict naming it")
    func conflicts() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            f.driver.close("stop")
            let id = s.id.rawValue
            let stopping = Task { try await f.manager.stop(id) }
            try await eventually("the stop to begin") { try await f.manager.get(id).state == .stopping }
            await expectError(.conflict, containing: "is stopping") { try await f.manager.resize(id, cpu: 2) }
            await expectError(.conflict, containing: "is stopping") { try await f.manager.delete(id) }
            await expectError(.conflict, containing: "it must be started") { try await f.manager.exec(id, ExecRequest(command: .argv(["true"]))) }
            #expect(try await f.manager.stop(id).state == .stopping, "a second stop just reports the stop in progress")
            f.driver.open("stop")
            #expect(try await stopping.value.state == .stopped)
            #expect(try await f.manager.resize(id, cpu: 2).resources.cpu == 2, "once stopped, the resize goes through")
        }
    }

    @Test("a transition past its deadline becomes a recoverable error; the late finish is refused")
    func deadlines() async throws {
        var deadlines = TransitionDeadlines()
        deadlines.starting = 60
        try await withRunner(deadlines: deadlines) { f in
            let s = try await f.manager.create(CreateParameters())
            let id = s.id.rawValue
            _ = try await f.manager.stop(id)
            f.driver.close("start")
            let starting = Task { try await f.manager.start(id) }
            try await eventually("the start to begin") { try await f.manager.get(id).state == .starting }
            f.clock.advance(by: 30)
            #expect(await f.manager.sweep().timedOut.isEmpty)
            f.clock.advance(by: 31)
            #expect(await f.manager.sweep().timedOut == [id])
            let stuck = try await f.manager.get(id)
            #expect(stuck.state == .error && stuck.recoverable)
            #expect(stuck.errorReason?.contains("stuck in starting") == true)
            f.driver.open("start")
            await #expect(throws: AtollError.self) { try await starting.value }
            #expect(try await f.manager.get(id).state == .error, "the late start did not overwrite the error")
            #expect(try await f.manager.recover(id).state == .started)
        }
    }

    @Test("recover: a failed create is recoverable; a non-error sandbox has nothing to recover")
    func recover() async throws {
        try await withRunner { f in
            f.driver.failNext("start", AtollError(.system, "clone3: out of luck"))
            await expectError(.system, containing: "out of luck") { try await f.manager.create(CreateParameters(name: "flaky")) }
            let failed = try await f.manager.get("flaky")
            #expect(failed.state == .error && failed.recoverable && failed.errorReason == "clone3: out of luck")
            await expectError(.conflict, containing: "in error") { try await f.manager.start("flaky") }
            #expect(try await f.manager.recover("flaky").state == .started)
            _ = try await f.manager.stop("flaky")
            await expectError(.conflict, containing: "not in error") { try await f.manager.recover("flaky") }
        }
    }

    @Test("resize: CPU and memory up while started; the disk and decreases only while stopped; never a smaller disk")
    func resize() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            let id = s.id.rawValue
            #expect(try await f.manager.resize(id, cpu: 2, memoryGiB: 4).resources == Resources(cpu: 2, memoryGiB: 4, diskGiB: 3))
            #expect(f.driver.calls("limits") == ["limits \(id) 2 4"])
            await expectError(.conflict, containing: "only grow while it runs") { try await f.manager.resize(id, cpu: 1) }
            await expectError(.conflict, containing: "only be resized while stopped") { try await f.manager.resize(id, diskGiB: 5) }
            await expectError(.invalidArgument, containing: "cpu 8 exceeds") { try await f.manager.resize(id, cpu: 8) }
            _ = try await f.manager.stop(id)
            let stopped = try await f.manager.resize(id, cpu: 1, memoryGiB: 1, diskGiB: 6)
            #expect(stopped.state == .stopped && stopped.resources == Resources(cpu: 1, memoryGiB: 1, diskGiB: 6))
            #expect(f.driver.calls("grow") == ["grow \(id) 6"])
            await expectError(.invalidArgument, containing: "disk can only grow") { try await f.manager.resize(id, diskGiB: 4) }
        }
    }

    @Test("labels, intervals and activity can change in any settled state")
    func settings() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters(labels: ["a": "1"]))
            let id = s.id.rawValue
            #expect(try await f.manager.setLabels(id, ["b": "2"]).labels == ["b": "2"])
            #expect(try await f.manager.setAutoStop(id, minutes: 5).intervals.autoStop == 5)
            #expect(try await f.manager.setAutoArchive(id, minutes: 60).intervals.autoArchive == 60)
            #expect(try await f.manager.setAutoDelete(id, minutes: -1).intervals.autoDelete == -1)
            await expectError(.invalidArgument, containing: "autoStopInterval") { try await f.manager.setAutoStop(id, minutes: -3) }
            f.clock.advance(by: 100)
            try await f.manager.touch(id)
            #expect(try await f.manager.get(id).lastActivityAt == f.clock.now())
        }
    }

    @Test("state survives a restart, with its history")
    func persistence() async throws {
        try await withRunner { f in
            let a = try await f.manager.create(CreateParameters(name: "a", labels: ["k": "v"]))
            let b = try await f.manager.create(CreateParameters(name: "b"))
            _ = try await f.manager.stop("b")
            let reopened = try await f.reopen()
            #expect(try await reopened.get("a").state == .started)
            #expect(try await reopened.get("a").labels["k"] == "v")
            #expect(try await reopened.get("b").state == .stopped)
            #expect(try await reopened.get(a.id.rawValue).ids == a.ids)
            #expect(try await reopened.history(b.id.rawValue).count == 4)
            await reopened.close()
        }
    }
}
