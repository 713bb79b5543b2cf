import AtollCore
import AtollLinux
import AtollRuntime
import AtollStore
import AtollTestSupport
import Foundation
import Testing

@Suite("runner: the warm pool on a fake driver")
struct WarmPoolTests {
    func pooled(_ size: Int) -> (inout RuntimeConfiguration) -> Void {
        { $0.warmPool = .defaultKey(size: size, pidsMax: $0.pidsMax) }
    }

    func memberIds(_ f: RunnerFixture) throws -> Set<String> {
        Set(try f.manager.database.poolMembers().map(\.id))
    }

    @Test("members are invisible; a matching create claims one with everything it asked for; the pool refills")
    func claimAppliesTheCreate() async throws {
        try await withRunner(configure: pooled(2)) { f in
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            let members = try memberIds(f)
            #expect(members.count == 2)
            #expect(try await f.manager.list().isEmpty, "pool members are nobody's")
            let now = f.clock.now()
            #expect(try await f.manager.usageReport(UsageQuery(from: now.addingTimeInterval(-60), to: now.addingTimeInterval(1))).items.isEmpty)

            f.clock.advance(by: 30)
            let claimed = try await f.manager.create(
                CreateParameters(
                    name: "warm", labels: ["team": "red"], env: ["GREETING": "hi"], language: .typescript,
                    intervals: LifecycleIntervals(autoStop: 5, autoArchive: 60, autoDelete: 120), network: NetworkPolicy(blockAll: true)))
            #expect(members.contains(claimed.id.rawValue), "served from the pool")
            #expect(claimed.name == "warm" && claimed.state == .started)
            #expect(claimed.labels == ["team": "red", Language.labelKey: "typescript"])
            #expect(claimed.env == ["GREETING": "hi"])
            #expect(claimed.intervals == LifecycleIntervals(autoStop: 5, autoArchive: 60, autoDelete: 120))
            #expect(claimed.network.blockAll)
            #expect(claimed.createdAt == f.clock.now(), "created when claimed")
            #expect(
                f.driver.calls("updateNetworkPolicy").contains("updateNetworkPolicy \(claimed.id.rawValue) block-all"),
                "the policy was in force before the create returned")
            #expect(try await f.manager.list().map(\.id) == [claimed.id])
            #expect(try await f.manager.history("warm").last?.reason == "claimed from the warm pool")

            // Allocation starts at the claim, not when the member was built.
            f.clock.advance(by: 10)
            let usage = try #require(
                try await f.manager.usageReport(
                    UsageQuery(
                        from: f.clock.now().addingTimeInterval(-3600), to: f.clock.now().addingTimeInterval(1))
                ).items.first)
            #expect(usage.vcpuSecondsAllocated == 10)

            try await eventually("the pool refills") { try await f.manager.warmPoolStatus().first?.ready == 2 }
            let status = try #require(try await f.manager.warmPoolStatus().first)
            #expect((status.claims, status.misses) == (1, 0))
            #expect(!(try memberIds(f)).contains(claimed.id.rawValue))
            try await f.manager.deleteAll()
            #expect(try await f.manager.drainWarmPool() == 2)
        }
    }

    @Test("CPU a member used while it waited in the pool is not billed to whoever claims it")
    func claimStartsTheMeterAtTheClaim() async throws {
        try await withRunner(configure: pooled(1)) { f in
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            let member = try SandboxID(try #require(try memberIds(f).first))
            f.driver.setUsage(member, CgroupUsage(cpuNanoseconds: 7_000_000_000))  // 7 s while pooled
            let claimed = try await f.manager.create(CreateParameters())
            #expect(claimed.id == member)
            f.clock.advance(by: 1)
            f.driver.setUsage(member, CgroupUsage(cpuNanoseconds: 9_000_000_000))  // 2 s after the claim
            await f.manager.meterRound()
            let now = f.clock.now()
            let usage = try #require(
                try await f.manager.usageReport(
                    UsageQuery(
                        sandboxId: member.rawValue, from: now.addingTimeInterval(-60), to: now.addingTimeInterval(1))
                ).items.first)
            #expect(usage.cpuSecondsUsed == 2)
        }
    }

    @Test("creates that differ in snapshot, resources or user, or choose an id, are built cold")
    func otherKeysGoCold() async throws {
        try await withRunner(configure: pooled(1)) { f in
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            let members = try memberIds(f)
            let big = try await f.manager.create(CreateParameters(resources: Resources(cpu: 2, memoryGiB: 1, diskGiB: 3)))
            let root = try await f.manager.create(CreateParameters(user: "root"))
            let chosen = try await f.manager.create(CreateParameters(id: try SandboxID("chosen-id")))
            #expect(members.isDisjoint(with: [big.id.rawValue, root.id.rawValue, chosen.id.rawValue]))
            #expect(try memberIds(f) == members, "the member is still there")
            #expect(try await f.manager.warmPoolStatus().first?.claims == 0)
        }
    }

    @Test("concurrent creates never share a member; the ones the pool cannot serve are built cold")
    func concurrentClaims() async throws {
        try await withRunner(configure: pooled(1)) { f in
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            let member = try #require(try memberIds(f).first)
            let manager = f.manager
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<4 { group.addTask { try await manager.create(CreateParameters(name: "c\(i)")).id.rawValue } }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(Set(ids).count == 4)
            #expect(ids.filter { $0 == member }.count == 1)
            let status = try #require(try await f.manager.warmPoolStatus().first)
            #expect(status.claims == 1 && status.misses >= 1)
        }
    }

    @Test("a taken name fails the create and leaves the pool alone")
    func nameConflict() async throws {
        try await withRunner(configure: pooled(1)) { f in
            _ = try await f.manager.create(CreateParameters(name: "taken", id: try SandboxID("first")))
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            let members = try memberIds(f)
            await expectError(.nameTaken, containing: "taken") { try await f.manager.create(CreateParameters(name: "taken")) }
            #expect(try memberIds(f) == members)
            #expect(try f.manager.database.poolMembers().allSatisfy { $0.pool == WarmPoolKey(pidsMax: f.configuration.pidsMax).description })
        }
    }

    @Test("a firewall failure during a claim discards the member and builds the sandbox cold")
    func failedClaimGoesCold() async throws {
        try await withRunner(configure: pooled(1)) { f in
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            let member = try #require(try memberIds(f).first)
            f.driver.failNext("updateNetworkPolicy", AtollError(.system, "nft: boom"))
            let sandbox = try await f.manager.create(CreateParameters(network: NetworkPolicy(blockAll: true)))
            #expect(sandbox.id.rawValue != member && sandbox.network.blockAll)
            #expect(f.driver.calls("destroy").contains("destroy \(member)"), "the half-claimed member is gone")
            try await eventually("the pool refills") { try await f.manager.warmPoolStatus().first?.ready == 1 }
        }
    }

    @Test("on restart: live members are kept, dead ones, a dead claimer's and unconfigured keys' are discarded")
    func restart() async throws {
        try await withRunner(configure: pooled(3)) { f in
            await f.manager.startWarmPool()
            try await f.manager.waitForWarmPool(timeout: 10)
            await f.manager.close()
            var members = try f.manager.database.poolMembers()
            // One member's PID 1 died; one was being claimed by a process that died.
            _ = try f.manager.database.update(id: members[0].id, at: 0) { $0.initPid = 999_999_999 }
            _ = try f.manager.database.update(id: members[1].id, at: 0) { row in
                row.pool = WarmPool.claimingPrefix + "dead"
                row.opPid = 999_999_999
                row.opStartTime = 1
            }
            let again = try await f.reopen()
            await again.startWarmPool()
            try await again.waitForWarmPool(timeout: 10)
            let after = Set(try again.database.poolMembers().map(\.id))
            #expect(after.count == 3)
            #expect(after.contains(members[2].id), "a live member is re-adopted")
            #expect(!after.contains(members[0].id) && !after.contains(members[1].id), "the dead one and the half-claimed one are gone")
            members = try again.database.poolMembers()
            #expect(try await again.list().isEmpty)
            await again.close()

            // A runner configured without the pool discards every member it finds.
            var off = f.configuration
            off.warmPool = WarmPoolConfiguration(entries: [
                WarmPoolConfiguration.Entry(
                    key: WarmPoolKey(resources: Resources(cpu: 2, memoryGiB: 2, diskGiB: 3), pidsMax: off.pidsMax), size: 0)
            ])
            let third = try await SandboxManager.open(configuration: off, driver: f.driver, clock: f.clock)
            await third.startWarmPool()
            try await eventually("every member is discarded") { try third.database.poolMembers().isEmpty }
            await third.close()
        }
    }

    @Test("ATOLL_WARM_POOL: a size for the default key, or SNAPSHOT/CPU/MEMORY/DISK/USER=SIZE entries; errors name the entry")
    func parsing() throws {
        let limits = ResourceLimits.defaults
        #expect(try WarmPoolConfiguration.parse("3", pidsMax: 4096, limits: limits) == .defaultKey(size: 3))
        #expect(try WarmPoolConfiguration.parse("0", pidsMax: 4096, limits: limits).isEmpty)
        let two = try WarmPoolConfiguration.parse("default/1/1/3/sandbox=2, py/2/4/10/root=1", pidsMax: 64, limits: limits)
        #expect(two.entries.map(\.key.description) == ["default/1/1/3/sandbox", "py/2/4/10/root"])
        #expect(two.size(for: WarmPoolKey(snapshot: "py", resources: Resources(cpu: 2, memoryGiB: 4, diskGiB: 10), user: "root", pidsMax: 64)) == 1)
        for (text, message) in [
            ("default/1/1/3=2", "SNAPSHOT/CPU"), ("default/9/1/3/sandbox=1", "cpu 9"), ("65", "between 0 and 64"),
            ("default/1/1/3/sandbox=1,default/1/1/3/sandbox=2", "twice"),
        ] {
            #expect { try WarmPoolConfiguration.parse(text, pidsMax: 4096, limits: limits) } throws: { error in
                "\(error)".contains(message)
            }
        }
    }
}
