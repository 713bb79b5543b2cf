import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Glibc
import Testing

extension SandboxTests {
    /// Stop, start, delete and disk growth at the runtime layer.
    @Suite("Lifecycle")
    struct LifecycleTests {
        @Test("stop and start keep the files and drop the processes")
        func stopStart() async throws {
            try await withSandbox { manager, sandbox in
                let setup = try await manager.sh(
                    sandbox.id, "echo kept > ~/kept.txt; setsid sleep 1000 < /dev/null > /dev/null 2>&1 & sleep 0.2; pgrep -c sleep")
                #expect(setup.stdoutText == "1\n")
                let stopped = try await manager.stop(sandbox.id.rawValue)
                #expect(stopped.state == .stopped)
                #expect(stopped.initPid == nil)
                #expect(kill(sandbox.initPid!, 0) == -1 && errno == ESRCH, "the old init is gone")
                #expect(LoopAttachment.devices(backing: manager.diskPath(sandbox)).isEmpty, "the disk is detached")
                #expect(KernelFile.exists(manager.diskPath(sandbox)), "the disk is kept")

                let restarted = try await manager.start(sandbox.id.rawValue)
                #expect(restarted.state == .started)
                #expect(restarted.initPid != sandbox.initPid)
                let after = try await manager.sh(sandbox.id, "cat ~/kept.txt; pgrep -c sleep || true; hostname")
                #expect(after.stdoutText == "kept\n0\n\(sandbox.id)\n")
            }
        }

        @Test("exec into a stopped sandbox is a conflict that says what to do")
        func execWhileStopped() async throws {
            try await withSandbox { manager, sandbox in
                try await manager.stop(sandbox.id.rawValue)
                await #expect(throws: AtollError.self) { try await manager.sh(sandbox.id, "true") }
                do {
                    _ = try await manager.sh(sandbox.id, "true")
                } catch let error as AtollError {
                    #expect(error.code == .conflict)
                    #expect(error.message.contains("stopped"))
                }
            }
        }

        @Test("delete leaves nothing behind: no process, cgroup, mount, loop device, file, record or id range")
        func deleteLeavesNothing() async throws {
            try await withTestRuntime { manager in
                let sandbox = try await manager.create(CreateParameters())
                _ = try await manager.sh(sandbox.id, "setsid sleep 1000 < /dev/null > /dev/null 2>&1 & echo data > /tmp/x")
                let directories = manager.hostDriver.cgroups.directories(sandbox.id.rawValue)
                #expect(directories.allSatisfy { KernelFile.exists($0) })
                let sandboxDirectory = (manager.diskPath(sandbox) as NSString).deletingLastPathComponent

                try await manager.delete(sandbox.id.rawValue)

                #expect(kill(sandbox.initPid!, 0) == -1 && errno == ESRCH)
                #expect(directories.allSatisfy { !KernelFile.exists($0) }, "cgroups left: \(directories)")
                #expect(LoopAttachment.devices(backing: manager.diskPath(sandbox)).isEmpty)
                let mounts = try MountInfo.current()
                #expect(!mounts.contains { $0.mountPoint.hasPrefix(manager.configuration.dataDirectory) || $0.source.contains(sandbox.id.rawValue) })
                #expect(!KernelFile.exists(sandboxDirectory))
                // The record, and with it the id range claim, is gone.
                #expect(try manager.database.sandbox(id: sandbox.id.rawValue) == nil)
                await #expect(throws: AtollError.self) { try await manager.get(sandbox.id.rawValue) }
            }
        }

        @Test("the disk grows while stopped, and only then")
        func growDisk() async throws {
            try await withSandbox(CreateParameters(resources: Resources(cpu: 1, memoryGiB: 1, diskGiB: 1))) { manager, sandbox in
                _ = try await manager.sh(sandbox.id, "echo before > ~/file")
                await #expect(throws: AtollError.self) { try await manager.resize(sandbox.id.rawValue, diskGiB: 2) }
                try await manager.stop(sandbox.id.rawValue)
                await #expect(throws: AtollError.self) { try await manager.resize(sandbox.id.rawValue, diskGiB: 11) }
                try await manager.resize(sandbox.id.rawValue, diskGiB: 2)
                try await manager.start(sandbox.id.rawValue)
                let df = try await manager.sh(sandbox.id, "df -B1M --output=size /tmp | tail -1; cat ~/file")
                let lines = df.stdoutText.split(separator: "\n")
                #expect((Int(lines[0].trimmingCharacters(in: .whitespaces)) ?? 0) > 1900)
                #expect(lines.last == "before")
                #expect(try await manager.get(sandbox.id.rawValue).resources.diskGiB == 2)
            }
        }

        @Test("a second runner on the same data directory adopts a running sandbox")
        func adoption() async throws {
            let first = try await TestRuntime.make()
            do {
                let sandbox = try await first.manager.create(CreateParameters())
                let second = try await SandboxManager.open(configuration: first.configuration)
                let info = try await second.get(sandbox.id.rawValue)
                #expect(info.state == .started)
                #expect(info.initPid == sandbox.initPid)
                let result = try await second.sh(sandbox.id, "echo adopted")
                #expect(result.stdoutText == "adopted\n")
                _ = try await second.stop(sandbox.id.rawValue)
                #expect(try await first.manager.get(sandbox.id.rawValue).state == .stopped)
            } catch {
                await first.cleanUp()
                throw error
            }
            await first.cleanUp()
        }

        @Test("resources outside the per-sandbox maximum are refused with the field and the limit")
        func resourceLimits() async throws {
            try await withTestRuntime { manager in
                do {
                    _ = try await manager.create(CreateParameters(resources: Resources(cpu: 5, memoryGiB: 1, diskGiB: 3)))
                    Issue.record("create with 5 vCPUs succeeded")
                } catch let error as AtollError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.message == "cpu 5 exceeds the per-sandbox maximum of 4 vCPUs")
                }
                #expect(try await manager.list().isEmpty, "a refused create leaves nothing")
            }
        }

        @Test("a missing snapshot is a clear error and leaves nothing")
        func missingSnapshot() async throws {
            try await withTestRuntime { manager in
                do {
                    _ = try await manager.create(CreateParameters(snapshot: "does-not-exist"))
                    Issue.record("create from a missing snapshot succeeded")
                } catch let error as AtollError {
                    #expect(error.code == .notFound)
                    #expect(error.message.contains("does-not-exist"))
                }
                #expect(try await manager.list().isEmpty)
            }
        }
    }
}
