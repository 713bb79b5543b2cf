import AtollCore
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Testing

extension SandboxTests {
    /// Issue 6: the per-second meter and allocation periods against real sandboxes and cgroups.
    @Suite("Metering")
    struct MeteringHostTests {
        @Test(
            "a 1 vCPU sandbox burning half a CPU for 10 s reports 5 ± 0.5 CPU seconds; allocation equals started wall-clock time; a stop leaves only the disk")
        func burn() async throws {
            try await withTestRuntime { manager in
                await manager.startMeter()
                let sandbox = try await manager.create(CreateParameters(resources: Resources(cpu: 1, memoryGiB: 1, diskGiB: 3)))
                let createdAt = Date()
                let id = sandbox.id.rawValue
                // Busy for 50 ms, asleep for 50 ms, for 10 s: half a CPU. Python reports what it
                // measured itself as well.
                let burnStart = Date()
                let burn = try await manager.code(
                    sandbox.id, .python,
                    """
                    import time
                    end = time.monotonic() + 10
                    while time.monotonic() < end:
                        busy = time.perf_counter() + 0.05
                        while time.perf_counter() < busy:
                            pass
                        time.sleep(0.05)
                    print(round(time.process_time(), 3))
                    """, timeout: 60)
                let burnEnd = Date()
                #expect(burn.exitCode == 0, "\(burn.stderrText)")
                let selfMeasured = try #require(Double(burn.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)))
                try await Task.sleep(for: .seconds(2))  // the meter's next samples
                let window = UsageQuery(sandboxId: id, from: burnStart.addingTimeInterval(-1), to: burnEnd.addingTimeInterval(2))
                let used = try #require(try await manager.usageReport(window).items.first).cpuSecondsUsed
                #expect(abs(used - 5) <= 0.5, "the meter saw \(used) CPU seconds")
                #expect(abs(used - selfMeasured) <= 0.3, "the meter saw \(used) s, the program measured \(selfMeasured) s")

                let stopped = try await manager.stop(id)
                let stoppedAt = Date()
                #expect(stopped.state == .stopped)
                try await Task.sleep(for: .seconds(2))
                let whole = UsageQuery(sandboxId: id, from: createdAt.addingTimeInterval(-60), to: Date().addingTimeInterval(1))
                let usage = try #require(try await manager.usageReport(whole).items.first)
                let wall = stoppedAt.timeIntervalSince(createdAt)
                #expect(abs(usage.vcpuSecondsAllocated - wall) <= 1, "allocated \(usage.vcpuSecondsAllocated) vCPU s for \(wall) s started")
                #expect(abs(usage.memoryGiBSecondsAllocated - wall) <= 1)
                #expect(usage.periods.map(\.allocation.kind) == ["compute", "disk"])
                #expect(usage.periods.last?.endedAt == nil, "the disk period is open")
                #expect(usage.diskGiBSecondsAllocated > 3 * wall, "the disk is billed while started and after")
                #expect(usage.memoryBytesPeak > 0 && usage.diskBytesUsed > 0)

                // Stopped: CPU and memory allocation no longer grow, disk does.
                try await Task.sleep(for: .seconds(1))
                let later = try #require(
                    try await manager.usageReport(UsageQuery(sandboxId: id, from: whole.from, to: Date().addingTimeInterval(1))).items.first)
                #expect(later.vcpuSecondsAllocated == usage.vcpuSecondsAllocated)
                #expect(later.diskGiBSecondsAllocated > usage.diskGiBSecondsAllocated)
                let meter = try #require(try await manager.meters().first { $0.sandboxId == id })
                #expect(Double(meter.cpuNanosecondsTotal) / 1e9 >= used, "the running total covers the window")
            }
        }
    }
}
