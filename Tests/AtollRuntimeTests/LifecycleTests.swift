import AtollCore
import AtollLinux
import AtollRuntime
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
            try await withSandbox { runtime, sandbox in
                let setup = try await runtime.sh(sandbox.id, "echo kept > ~/kept.txt; setsid sleep 1000 < /dev/null > /dev/null 2>&1 & sleep 0.2; pgrep -c sleep")
                #expect(setup.stdoutText == "1\n")
                let stopped = try await runtime.stop(sandbox.id)
                #expect(stopped.state == .stopped)
                #expect(stopped.initPid == nil)
                #expect(kill(sandbox.initPid!, 0) == -1 && errno == ESRCH, "the old init is gone")
                #expect(LoopAttachment.devices(backing: sandbox.diskPath).isEmpty, "the disk is detached")
                #expect(KernelFile.exists(sandbox.diskPath), "the disk is kept")

                let restarted = try await runtime.start(sandbox.id)
                #expect(restarted.state == .started)
                #expect(restarted.initPid != sandbox.initPid)
                let after = try await runtime.sh(sandbox.id, "cat ~/kept.txt; pgrep -c sleep || true; hostname")
                #expect(after.stdoutText == "kept\n0\n\(sandbox.id)\n")
            }
        }

        @Test("exec into a stopped sandbox is a conflict that says what to do")
        func execWhileStopped() async throws {
            try await withSandbox { runtime, sandbox in
                try await runtime.stop(sandbox.id)
                await #expect(throws: AtollError.self) { try await runtime.sh(sandbox.id, "true") }
                do {
                    _ = try await runtime.sh(sandbox.id, "true")
                } catch let error as AtollError {
                    #expect(error.code == .conflict)
                    #expect(error.message.contains("stopped"))
                }
            }
        }

        @Test("delete leaves nothing behind: no process, cgroup, mount, loop device, file or id range")
        func deleteLeavesNothing() async throws {
            try await withTestRuntime { runtime in
                let sandbox = try await runtime.create(SandboxSpec())
                _ = try await runtime.sh(sandbox.id, "setsid sleep 1000 < /dev/null > /dev/null 2>&1 & echo data > /tmp/x")
                let directories = runtime.cgroups.directories(sandbox.id.rawValue)
                #expect(directories.allSatisfy { KernelFile.exists($0) })
                let sandboxDirectory = (sandbox.diskPath as NSString).deletingLastPathComponent

                try await runtime.delete(sandbox.id)

                #expect(kill(sandbox.initPid!, 0) == -1 && errno == ESRCH)
                #expect(directories.allSatisfy { !KernelFile.exists($0) }, "cgroups left: \(directories)")
                #expect(LoopAttachment.devices(backing: sandbox.diskPath).isEmpty)
                let mounts = try MountInfo.current()
                #expect(!mounts.contains { $0.mountPoint.hasPrefix(runtime.configuration.dataDirectory) || $0.source.contains(sandbox.id.rawValue) })
                #expect(!KernelFile.exists(sandboxDirectory))
                let claims = (try? FileManager.default.contentsOfDirectory(atPath: "\(runtime.configuration.dataDirectory)/idranges")) ?? []
                #expect(claims.isEmpty, "id range claims left: \(claims)")
                await #expect(throws: AtollError.self) { try await runtime.info(sandbox.id) }
            }
        }

        @Test("the disk grows while stopped, and only then")
        func growDisk() async throws {
            try await withSandbox(SandboxSpec(resources: Resources(cpu: 1, memoryGiB: 1, diskGiB: 1))) { runtime, sandbox in
                _ = try await runtime.sh(sandbox.id, "echo before > ~/file")
                await #expect(throws: AtollError.self) { try await runtime.resizeDisk(sandbox.id, gib: 2) }
                try await runtime.stop(sandbox.id)
                await #expect(throws: AtollError.self) { try await runtime.resizeDisk(sandbox.id, gib: 11) }
                try await runtime.resizeDisk(sandbox.id, gib: 2)
                try await runtime.start(sandbox.id)
                let df = try await runtime.sh(sandbox.id, "df -B1M --output=size /tmp | tail -1; cat ~/file")
                let lines = df.stdoutText.split(separator: "\n")
                #expect((Int(lines[0].trimmingCharacters(in: .whitespaces)) ?? 0) > 1900)
                #expect(lines.last == "before")
                #expect(try await runtime.info(sandbox.id).resources.diskGiB == 2)
            }
        }

        @Test("a second runtime on the same data directory adopts a running sandbox")
        func adoption() async throws {
            let first = try TestRuntime.make()
            do {
                let sandbox = try await first.runtime.create(SandboxSpec())
                let second = try SandboxRuntime(configuration: first.runtime.configuration)
                let info = try await second.info(sandbox.id)
                #expect(info.state == .started)
                #expect(info.initPid == sandbox.initPid)
                let result = try await second.sh(sandbox.id, "echo adopted")
                #expect(result.stdoutText == "adopted\n")
                try await second.stop(sandbox.id)
                #expect(try await first.runtime.info(sandbox.id).state == .stopped)
            } catch {
                await first.cleanUp()
                throw error
            }
            await first.cleanUp()
        }

        @Test("resources outside the per-sandbox maximum are refused with the field and the limit")
        func resourceLimits() async throws {
            try await withTestRuntime { runtime in
                do {
                    _ = try await runtime.create(SandboxSpec(resources: Resources(cpu: 5, memoryGiB: 1, diskGiB: 3)))
                    Issue.record("create with 5 vCPUs succeeded")
                } catch let error as AtollError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.message == "cpu 5 exceeds the per-sandbox maximum of 4 vCPUs")
                }
                #expect(await runtime.list().isEmpty, "a refused create leaves nothing")
            }
        }

        @Test("a missing snapshot is a clear error and leaves nothing")
        func missingSnapshot() async throws {
            try await withTestRuntime { runtime in
                do {
                    _ = try await runtime.create(SandboxSpec(snapshot: "does-not-exist"))
                    Issue.record("create from a missing snapshot succeeded")
                } catch let error as AtollError {
                    #expect(error.code == .notFound)
                    #expect(error.message.contains("does-not-exist"))
                }
                #expect(await runtime.list().isEmpty)
            }
        }
    }
}
