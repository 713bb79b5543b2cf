import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Testing

@Suite("runner: allocation periods and usage on a fake driver")
struct MeteringTests {
    /// Usage from `from` (default: a day before the fixture clock's now) until just after now.
    func report(_ f: RunnerFixture, sandbox: String? = nil, from: Double? = nil, groupBy: UsageGrouping = .sandbox) async throws -> UsageReport {
        let start = from.map { Date(timeIntervalSince1970: $0) } ?? f.clock.now().addingTimeInterval(-86400)
        return try await f.manager.usageReport(
            UsageQuery(
                sandboxId: sandbox, from: start,
                to: f.clock.now().addingTimeInterval(1), groupBy: groupBy))
    }

    @Test("started allocates CPU, memory and disk; stopped only disk; archived the archive; error and delete nothing")
    func periodsFollowStates() async throws {
        try await withRunner { f in
            let t0 = f.clock.now().timeIntervalSince1970
            let s = try await f.manager.create(CreateParameters(resources: Resources(cpu: 2, memoryGiB: 4, diskGiB: 5)))
            let id = s.id.rawValue
            f.clock.advance(by: 100)
            _ = try await f.manager.stop(id)
            f.clock.advance(by: 50)
            _ = try await f.manager.archive(id)
            try await f.manager.waitForBackgroundWork(id)
            f.clock.advance(by: 30)
            _ = try await f.manager.start(id)
            f.clock.advance(by: 10)
            try await f.manager.delete(id)
            f.clock.advance(by: 1000)

            let usage = try #require(try await report(f, from: t0).items.first)
            #expect(usage.periods.map(\.allocation.kind) == ["compute", "disk", "archive", "compute"])
            #expect(usage.periods.allSatisfy { $0.endedAt != nil }, "deleted: every period is closed")
            #expect(usage.vcpuSecondsAllocated == 2 * (100 + 10))
            #expect(usage.memoryGiBSecondsAllocated == 4 * (100 + 10))
            #expect(usage.diskGiBSecondsAllocated == 5 * (100 + 50 + 10))
            #expect(usage.archiveGiBSecondsAllocated > 0)
            #expect(usage.state == "destroyed")
            // Periods touch: no gaps, no overlaps.
            for (a, b) in zip(usage.periods, usage.periods.dropFirst()) { #expect(a.endedAt == b.startedAt) }
            let prices = PriceTable.defaults
            let expected = prices.cost(
                vcpuSeconds: usage.vcpuSecondsAllocated, memoryGiBSeconds: usage.memoryGiBSecondsAllocated,
                diskGiBSeconds: usage.diskGiBSecondsAllocated, archiveGiBSeconds: usage.archiveGiBSecondsAllocated)
            #expect(abs(usage.estimatedCost - expected) < 1e-12)
        }
    }

    @Test("a failed start ends no period; error closes it; recover opens compute again")
    func errorAndRecover() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            let id = s.id.rawValue
            f.clock.advance(by: 20)
            f.driver.failNext("stop", AtollError(.system, "boom"))
            await expectError(.system, containing: "boom") { try await f.manager.stop(id) }
            f.clock.advance(by: 40)
            _ = try await f.manager.recover(id)
            f.clock.advance(by: 5)
            let usage = try #require(try await report(f).items.first)
            // 20 s started, then the stop failed: the compute period ran until the error, then
            // nothing for 40 s, then compute again.
            #expect(usage.periods.map(\.allocation.kind) == ["compute", "compute"])
            #expect(usage.vcpuSecondsAllocated == 20 + 5)
        }
    }

    @Test("a live resize rolls the period with the new resources; a relabel rolls it too, for grouping by label")
    func resizeAndLabels() async throws {
        try await withRunner { f in
            let a = try await f.manager.create(CreateParameters(labels: ["team": "red"]))
            let b = try await f.manager.create(CreateParameters(labels: ["team": "blue"]))
            f.clock.advance(by: 10)
            _ = try await f.manager.resize(a.id.rawValue, cpu: 3)
            f.clock.advance(by: 10)
            _ = try await f.manager.setLabels(a.id.rawValue, ["team": "blue"])
            f.clock.advance(by: 10)
            let byTeam = try await report(f, groupBy: .label("team"))
            let red = try #require(byTeam.items.first { $0.key == "red" })
            let blue = try #require(byTeam.items.first { $0.key == "blue" })
            #expect(red.vcpuSecondsAllocated == 10 * 1 + 10 * 3)
            #expect(blue.vcpuSecondsAllocated == 30 * 1 + 10 * 3, "b all along, a after its relabel")
            #expect(Set(blue.sandboxIds) == [a.id.rawValue, b.id.rawValue])
            #expect(byTeam.total.vcpuSecondsAllocated == red.vcpuSecondsAllocated + blue.vcpuSecondsAllocated)
            let one = try await report(f, sandbox: a.name)
            #expect(one.items.map(\.key) == [a.id.rawValue])
        }
    }

    @Test("periods roll over at midnight UTC")
    func dailyRollover() async throws {
        try await withRunner { f in
            f.clock.set(Date(timeIntervalSince1970: 20 * 86400 - 60))  // one minute before midnight
            let s = try await f.manager.create(CreateParameters())
            f.clock.advance(by: 150)
            await f.manager.meterRound()
            let periods = try #require(try await report(f, from: 19 * 86400).items.first).periods
            #expect(periods.count == 2)
            #expect(periods[0].endedAt == Date(timeIntervalSince1970: 20 * 86400))
            #expect(periods[0].endReason == "daily rollover")
            #expect(periods[1].startedAt == Date(timeIntervalSince1970: 20 * 86400) && periods[1].endedAt == nil)
            _ = s
        }
    }

    @Test("a sandbox that died while no runner watched is billed until the last durable sample, no further, no less")
    func crashClosesAtLastSample() async throws {
        try await withRunner { f in
            let t0 = f.clock.now().timeIntervalSince1970
            let s = try await f.manager.create(CreateParameters())
            f.clock.advance(by: 30)
            await f.manager.meterRound()  // the last sample a runner took
            f.clock.advance(by: 600)  // the runner is gone; PID 1 dies somewhere in here
            try f.manager.database.update(id: s.id.rawValue, at: f.clock.now().timeIntervalSince1970) { $0.initPid = Int32.max - 3 }
            let restarted = try await f.reopen()
            #expect(try await restarted.get(s.id.rawValue).state == .stopped)
            f.clock.advance(by: 10)
            let usage = try #require(
                try await restarted.usageReport(
                    UsageQuery(
                        from: Date(timeIntervalSince1970: t0), to: f.clock.now())
                ).items.first)
            #expect(usage.vcpuSecondsAllocated == 30)
            #expect(usage.periods.map(\.allocation.kind) == ["compute", "disk"])
            #expect(usage.periods[1].startedAt == Date(timeIntervalSince1970: t0 + 30), "the disk period starts where compute ended")
            #expect(usage.diskGiBSecondsAllocated == 3 * (30 + 600 + 10))
        }
    }

    @Test("the meter turns cumulative CPU into deltas (a reset counts from zero), keeps totals through compaction")
    func meterDeltas() async throws {
        try await withRunner { f in
            let t0 = f.clock.now().timeIntervalSince1970
            let s = try await f.manager.create(CreateParameters())
            for (cpu, memory) in [(UInt64(1_000_000_000), UInt64(100 << 20)), (3_000_000_000, 300 << 20), (500_000_000, 50 << 20)] {
                f.clock.advance(by: 1)
                f.driver.setUsage(s.id, CgroupUsage(cpuNanoseconds: cpu, memoryBytes: memory, memoryPeakBytes: memory, oomKills: 1))
                f.driver.setDiskBytes(s.id, memory)
                #expect(await f.manager.meterRound() == 1)
            }
            var usage = try #require(try await report(f, from: t0).items.first)
            #expect(usage.cpuSecondsUsed == 3.5, "1 + 2 + 0.5 (the counter went back: a new cgroup)")
            #expect(usage.memoryBytesPeak == 300 << 20)
            #expect(usage.diskBytesUsed == 50 << 20, "the last reading")
            let meter = try #require(try await f.manager.meters().first)
            #expect(meter.cpuNanosecondsTotal == 3_500_000_000)
            #expect(meter.oomKillsTotal == 1, "the OOM counter did not move after the first reading")
            // Fold everything into minutes: the totals stay.
            try f.manager.database.compactUsage(detailBefore: f.clock.now().timeIntervalSince1970 + 3600, retainAfter: 0)
            usage = try #require(try await report(f, from: t0 - 60).items.first)
            #expect(usage.cpuSecondsUsed == 3.5)
            #expect(usage.memoryBytesPeak == 300 << 20)
        }
    }

    @Test("bad usage queries are refused with the field named")
    func badQueries() async throws {
        try await withRunner { f in
            let now = f.clock.now()
            await expectError(.invalidArgument, containing: "must be before") {
                try await f.manager.usageReport(UsageQuery(from: now, to: now))
            }
            await expectError(.invalidArgument, containing: "366 days") {
                try await f.manager.usageReport(UsageQuery(from: now.addingTimeInterval(-400 * 86400), to: now))
            }
            await expectError(.notFound, containing: "no-such-box") {
                try await f.manager.usageReport(UsageQuery(sandboxId: "no-such-box", from: now.addingTimeInterval(-60), to: now))
            }
        }
        #expect(throws: AtollError.self) { try UsageGrouping(parsing: "team") }
        #expect(try UsageGrouping(parsing: "label:team") == .label("team"))
    }
}
