import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Foundation
import Glibc
import Testing

extension SandboxTests {
    /// cgroup limits on real sandboxes: CPU quota, memory with OOM reporting, the task limit and the
    /// disk size. Serialized: the CPU measurements need the machine's cores to themselves.
    @Suite("Resource limits")
    struct ResourceTests {
        /// CPU used by the sandbox per second of wall time while `body` runs.
        func cpuShare(_ manager: SandboxManager, _ id: SandboxID, seconds: Double) async throws -> Double {
            let before = try await manager.usage(id.rawValue).cpuNanoseconds
            let start = Monotonic.now()
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            let used = Double(try await manager.usage(id.rawValue).cpuNanoseconds - before) / 1e9
            return used / (Monotonic.now() - start)
        }

        @Test("a CPU hog gets its quota, and a live change to 0.5 vCPU takes effect at once")
        func cpuQuota() async throws {
            try await withSandbox { manager, sandbox in
                async let hog = manager.sh(sandbox.id, "while :; do :; done", timeout: 6)
                try await Task.sleep(for: .milliseconds(300))
                let full = try await cpuShare(manager, sandbox.id, seconds: 1.5)
                // Half a vCPU is below Daytona's whole-vCPU resources: set it on the cgroup directly.
                var limits = CgroupLimits(sandbox.resources, pidsMax: sandbox.pidsMax)
                limits.cpuMillis = 500
                try manager.hostDriver.cgroups.update(sandbox.id.rawValue, limits: limits)
                try await Task.sleep(for: .milliseconds(300))
                let half = try await cpuShare(manager, sandbox.id, seconds: 3)
                let result = try await hog
                #expect(result.timedOut)
                // At 1 vCPU on a 2-core machine the quota is not the bottleneck; only show it was well above 0.5.
                #expect(full > 0.75 && full <= 1.1, "1 vCPU hog used \(full) CPU")
                #expect(abs(half - 0.5) <= 0.1, "0.5 vCPU hog used \(half) CPU")
            }
        }

        @Test("a memory hog over the limit is OOM-killed and reported; the sandbox lives on")
        func memoryLimit() async throws {
            try await withSandbox { manager, sandbox in
                let hog = """
                    chunks = []
                    for i in range(48):
                        chunks.append(b"\\x01" * (64 << 20))
                        print(i, flush=True)
                    print("allocated 3 GiB")
                    """
                let result = try await manager.code(sandbox.id, .python, hog, timeout: 60)
                #expect(result.termination == .signaled(SIGKILL))
                #expect(result.oomKilled)
                #expect(!result.stdoutText.contains("allocated"))
                let usage = try await manager.usage(sandbox.id.rawValue)
                #expect(usage.oomKills >= 1)
                #expect(usage.memoryPeakBytes <= UInt64(sandbox.resources.memoryGiB) << 30)
                #expect(usage.memoryPeakBytes >= UInt64(sandbox.resources.memoryGiB) << 29, "the hog should have reached the limit")
                let alive = try await manager.sh(sandbox.id, "echo alive")
                #expect(alive.stdoutText == "alive\n")
            }
        }

        @Test("a fork bomb stops at the task limit and the host is fine")
        func forkBomb() async throws {
            try await withSandbox(pidsMax: 64) { manager, sandbox in
                // bash retries a failed fork, so the bomb keeps pushing against the limit.
                async let bomb = manager.sh(sandbox.id, "bash -c 'bomb() { bomb | bomb & }; bomb; sleep 5'", timeout: 4)
                var peak = 0
                for _ in 0..<20 {
                    try await Task.sleep(for: .milliseconds(100))
                    peak = max(peak, try await manager.usage(sandbox.id.rawValue).pids)
                }
                // The host can still start processes while the bomb runs.
                let host = Process()
                host.executableURL = URL(fileURLWithPath: "/bin/true")
                try host.run()
                host.waitUntilExit()
                #expect(host.terminationStatus == 0)
                _ = try await bomb
                #expect(peak <= 64, "tasks in the sandbox: \(peak)")
                #expect(peak >= 32, "the bomb should have pushed against the limit, peak \(peak)")
                #expect(try await manager.usage(sandbox.id.rawValue).pidsLimitHits > 0, "forks were refused at the limit")
                try await manager.stop(sandbox.id.rawValue)
                #expect(try manager.hostDriver.cgroups.processes(sandbox.id.rawValue).isEmpty)
            }
        }

        @Test("filling the disk gives ENOSPC inside and costs the host only the disk's size")
        func diskFull() async throws {
            try await withSandbox(CreateParameters(resources: Resources(cpu: 1, memoryGiB: 1, diskGiB: 1))) { manager, sandbox in
                let fill = try await manager.sh(
                    sandbox.id,
                    """
                    dd if=/dev/zero of=/tmp/fill bs=1M 2>&1; echo "dd=$?"
                    head -c 50M /dev/zero > ~/more; echo "head=$?"
                    stat -c %s /tmp/fill
                    """, timeout: 120)
                let lines = fill.stdoutText.split(separator: "\n").map(String.init)
                #expect(fill.stdoutText.contains("No space left on device"), "\(fill.stdoutText)")
                #expect(fill.stderrText.contains("No space left on device"), "\(fill.stderrText)")
                #expect(lines.contains("dd=1") && lines.contains("head=1"), "\(lines)")
                #expect((UInt64(lines.last ?? "") ?? 0) > 900 << 20, "the sandbox could use its whole disk")
                let image = DiskImage(path: manager.diskPath(sandbox))
                #expect(try image.sizeBytes() == 1 << 30)
                #expect(try image.allocatedBytes() <= (1 << 30) + (1 << 20))
                // Deleting the file frees the space again.
                let freed = try await manager.sh(sandbox.id, "rm /tmp/fill && echo ok > /home/sandbox/ok && cat /home/sandbox/ok")
                #expect(freed.stdoutText == "ok\n")
            }
        }
    }
}
