import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Glibc
import Testing

/// Restart safety with the real driver: the `atoll` binary is killed with SIGKILL at a named
/// point of a transition (ATOLL_FAILPOINT), then a new runner opens the same data directory.
/// Every case must end in its documented state with nothing leaked, and keep working after.
@Suite("crash safety", .sandboxes, .serialized)
struct CrashTests {
    struct Outcome {
        var status: Int32
        var killed: Bool
        var stdout: String
        var stderr: String
    }

    static var binary: String { RunCommandTests.binary }

    /// Runs `atoll ARGS --data-dir …` on the test's configuration, optionally armed to die.
    func atoll(_ arguments: [String], _ configuration: RuntimeConfiguration, failpoint: String? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments + ["--data-dir", configuration.dataDirectory]
        var env = ProcessInfo.processInfo.environment
        env["ATOLL_SNAPSHOTS_DIR"] = configuration.driver.snapshotsDirectory
        env["ATOLL_CGROUP_NAME"] = configuration.driver.cgroupName
        env["ATOLL_ID_RANGE_START"] = "\(configuration.idRangeStart)"
        env["ATOLL_FAILPOINT"] = failpoint
        // The test runner's own network namespace plays the host: the real one is never touched.
        env["ATOLL_NETNS"] = configuration.driver.network?.namespacePath
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, killed: process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL,
            stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Checks the host against the database: every cgroup, sandbox directory, archive and loop
    /// device belongs to a sandbox in a state that explains it, no process runs in a sandbox
    /// that is not started, and nothing is mounted on the host under the data directory.
    func expectConsistent(_ manager: SandboxManager, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let driver = manager.hostDriver
        let config = manager.configuration.driver
        let sandboxes = try await manager.list()
        let ids = Set(sandboxes.map(\.id.rawValue))
        for group in driver.cgroups.childGroups() {
            #expect(ids.contains(group), "orphan cgroup \(group)", sourceLocation: sourceLocation)
        }
        for dir in (try? FileManager.default.contentsOfDirectory(atPath: config.sandboxesDirectory)) ?? [] {
            #expect(ids.contains(dir), "orphan directory \(dir)", sourceLocation: sourceLocation)
        }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: config.archiveDirectory)) ?? [] {
            let owner = sandboxes.first { file == "\($0.id).tar.zst" }
            #expect(owner?.state == .archived, "archive \(file) without an archived sandbox", sourceLocation: sourceLocation)
        }
        for sandbox in sandboxes {
            let processes = driver.cgroups.exists(sandbox.id.rawValue) ? try driver.cgroups.processes(sandbox.id.rawValue) : []
            let loops = LoopAttachment.devices(backing: config.diskPath(sandbox.id))
            if sandbox.state == .started {
                #expect(!processes.isEmpty && loops.count == 1, "\(sandbox.id) started: \(processes) \(loops)", sourceLocation: sourceLocation)
            } else {
                #expect(processes.isEmpty, "processes left in \(sandbox.state) sandbox \(sandbox.id): \(processes)", sourceLocation: sourceLocation)
                #expect(loops.isEmpty, "loop device left for \(sandbox.state) sandbox \(sandbox.id)", sourceLocation: sourceLocation)
            }
            #expect(
                KernelFile.exists(config.diskPath(sandbox.id)) == (sandbox.state != .archived),
                "disk of \(sandbox.state) sandbox \(sandbox.id)", sourceLocation: sourceLocation)
        }
        let mounts = try MountInfo.current()
        #expect(!mounts.contains { $0.mountPoint.hasPrefix(config.dataDirectory) }, "host mounts under the data directory", sourceLocation: sourceLocation)
    }

    /// A fresh configuration, a sandbox made by the CLI in `state`, and cleanup afterwards.
    func scenario(_ state: SandboxState, _ body: (RuntimeConfiguration, String) async throws -> Void) async throws {
        let configuration = try TestRuntime.configuration()
        do {
            let made = try atoll(["create", "--name", "crash-me"], configuration)
            try #require(made.status == 0, "\(made.stderr)")
            let id = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let write = try atoll(["exec", id, "-c", "echo survived > ~/marker"], configuration)
            try #require(write.status == 0, "\(write.stderr)")
            if state != .started { try #require(try atoll(["stop", id], configuration).status == 0) }
            if state == .archived { try #require(try atoll(["archive", id], configuration).status == 0) }
            try await body(configuration, id)
        } catch {
            await TestRuntime.cleanUp(configuration)
            throw error
        }
        await TestRuntime.cleanUp(configuration)
    }

    /// Reopens and checks the state, the consistency, and that the sandbox works again.
    func afterCrash(
        _ configuration: RuntimeConfiguration, _ id: String, expect state: SandboxState,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> SandboxManager {
        let manager = try await SandboxManager.open(configuration: configuration)
        let sandbox = try await manager.get(id)
        #expect(sandbox.state == state, "\(sandbox.state) \(sandbox.errorReason ?? "")", sourceLocation: sourceLocation)
        try await expectConsistent(manager, sourceLocation: sourceLocation)
        return manager
    }

    func expectWorks(_ manager: SandboxManager, _ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let current = try await manager.get(id)
        if current.state == .error { _ = try await manager.recover(id) }
        if current.state != .started && current.state != .error { _ = try await manager.start(id) }
        let marker = try await manager.exec(id, ExecRequest(command: .shell("cat ~/marker 2>/dev/null || echo fresh")))
        #expect(["survived\n", "fresh\n"].contains(marker.stdoutText), "\(marker.stdoutText)", sourceLocation: sourceLocation)
        try await expectConsistent(manager, sourceLocation: sourceLocation)
    }

    @Test(
        "killed mid-create (disk made / init started): error, recoverable, nothing running; recover works",
        arguments: ["create.after-provision", "create.after-start"])
    func midCreate(failpoint: String) async throws {
        let configuration = try TestRuntime.configuration()
        do {
            let run = try atoll(["create", "--name", "half"], configuration, failpoint: failpoint)
            #expect(run.killed, "\(run.status) \(run.stderr)")
            let manager = try await afterCrash(configuration, "half", expect: .error)
            #expect(try await manager.get("half").recoverable)
            try await expectWorks(manager, "half")
            await manager.close()
        } catch {
            await TestRuntime.cleanUp(configuration)
            throw error
        }
        await TestRuntime.cleanUp(configuration)
    }

    @Test("killed mid-stop: stopped, files kept")
    func midStop() async throws {
        try await scenario(.started) { configuration, id in
            #expect(try atoll(["stop", id], configuration, failpoint: "stop.after-kill").killed)
            let manager = try await afterCrash(configuration, id, expect: .stopped)
            try await expectWorks(manager, id)
            await manager.close()
        }
    }

    @Test("killed after the archive was written but before it was recorded: stopped, the archive discarded")
    func midArchiveWritten() async throws {
        try await scenario(.stopped) { configuration, id in
            #expect(try atoll(["archive", id], configuration, failpoint: "archive.after-write").killed)
            let manager = try await afterCrash(configuration, id, expect: .stopped)
            try await expectWorks(manager, id)
            await manager.close()
        }
    }

    @Test("killed after the archive was recorded but before the disk went: archived, the disk removed")
    func midArchiveRecorded() async throws {
        try await scenario(.stopped) { configuration, id in
            #expect(try atoll(["archive", id], configuration, failpoint: "archive.after-state").killed)
            let manager = try await afterCrash(configuration, id, expect: .archived)
            try await expectWorks(manager, id)
            await manager.close()
        }
    }

    @Test("killed mid-restore: archived again, the archive intact")
    func midRestore() async throws {
        try await scenario(.archived) { configuration, id in
            #expect(try atoll(["start", id], configuration, failpoint: "restore.after-restore").killed)
            let manager = try await afterCrash(configuration, id, expect: .archived)
            try await expectWorks(manager, id)
            await manager.close()
        }
    }

    @Test("killed mid-delete: the delete is finished")
    func midDelete() async throws {
        try await scenario(.started) { configuration, id in
            #expect(try atoll(["delete", id], configuration, failpoint: "delete.after-destroy").killed)
            let manager = try await SandboxManager.open(configuration: configuration)
            await #expect(throws: AtollError.self) { try await manager.get(id) }
            try await expectConsistent(manager)
            await manager.close()
        }
    }

    @Test("killed mid-resize of the disk: stopped with the recorded size, and the resize can be repeated")
    func midResize() async throws {
        try await scenario(.stopped) { configuration, id in
            #expect(try atoll(["resize", id, "--disk", "4"], configuration, failpoint: "resize.after-apply").killed)
            let manager = try await afterCrash(configuration, id, expect: .stopped)
            #expect(try await manager.get(id).resources.diskGiB == 3)
            #expect(try await manager.resize(id, diskGiB: 4).resources.diskGiB == 4)
            try await expectWorks(manager, id)
            await manager.close()
        }
    }

    @Test("the process that started a sandbox goes away: the sandbox keeps running and is re-adopted")
    func readopted() async throws {
        try await scenario(.started) { configuration, id in
            let manager = try await afterCrash(configuration, id, expect: .started)
            let before = try await manager.get(id).initPid
            try await expectWorks(manager, id)
            #expect(try await manager.get(id).initPid == before, "the same PID 1, not a restart")
            await manager.close()
        }
    }
}
