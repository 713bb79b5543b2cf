public import AtollCore
import AtollLinux
import AtollSandbox
import AtollStore
import Foundation

/// The state of one warm pool, for `/api/warm-pool`, `/metrics` and `atoll pool`.
public struct WarmPoolStatus: Sendable, Hashable {
    public var key: WarmPoolKey
    /// The configured number of ready members.
    public var size: Int
    /// Members started and ready to be claimed.
    public var ready: Int
    /// Members being built.
    public var creating: Int
    /// Creates this runner served from the pool, and matching creates it had to build cold
    /// because the pool was empty (since the runner opened).
    public var claims: Int
    public var misses: Int
    /// Why the last refill failed, if it did.
    public var lastError: String?
}

/// Counters of one key, kept by the runner.
struct WarmPoolCounters {
    var claims = 0
    var misses = 0
    var lastError: String?
    /// After a failed build, the key is not tried again before this time (seconds since 1970).
    var retryAt: Double = 0

    /// Seconds a key waits after a failed build.
    static let backoff: Double = 10
}

/// The warm pool: started sandboxes per `WarmPoolKey`, built ahead of time under the
/// organization `WarmPool.organization` (which no key can act for) and without allocation
/// periods. A create whose snapshot, resources, user and task limit match a key claims the
/// oldest ready member in two transactions — reserve it (with the requested network policy
/// already in force), then hand it over (organization, name, labels, env, intervals, owner) —
/// so two creates never get the same member and no one sees a member before it is theirs.
/// Anything that goes wrong mid-claim discards the member and the create takes the cold path.
extension SandboxManager {
    // MARK: - Claim

    /// A pooled sandbox for `plan`, or nil when its key has no pool or no ready member.
    func claimWarm(_ plan: CreatePlan) async throws -> Sandbox? {
        let key = plan.poolKey
        guard configuration.warmPool.size(for: key) > 0 else { return nil }
        // A taken name fails the create either way: say so before touching the pool.
        if let name = plan.name, try database.sandbox(idOrName: name, organizationId: plan.organizationId)?.name == name {
            throw AtollError.nameTaken(name)
        }
        // The member's resources are on the host already; they move to the organization.
        try admit(
            AdmissionRequest(
                cpu: plan.resources.cpu, memoryGiB: plan.resources.memoryGiB, diskGiB: plan.resources.diskGiB,
                newSandbox: true), organization: plan.organizationId, hostHoldsIt: true)
        let token = UUID().uuidString
        let policy = plan.network
        guard
            let member = try database.reservePoolMember(
                key: key, token: token, at: now, isAlive: { $0.initProcess?.isRunning ?? false },
                { [me] row in
                    // The claimer, so others leave the member alone while it lives.
                    row.opPid = me.pid
                    row.opStartTime = Int64(me.startTime)
                    row.networkPolicy = policy
                })
        else {
            poolCounters[key, default: WarmPoolCounters()].misses += 1
            wakeWarmPool()
            return nil
        }
        wakeWarmPool()
        do {
            if policy != .open {
                // The firewall reads the policy from the reserved row: in force before handover.
                let database = self.database
                let id = member.id
                try await driver.updateNetworkPolicy {
                    guard let row = try database.sandbox(id: id), row.sandboxState == .started else { return nil }
                    return try Self.machine(row)
                }
            }
            let plan = plan
            let baseline = try? await driver.usage(try Self.machine(member))
            let claimed = try database.completeClaim(
                id: member.id, token: token, organizationId: plan.organizationId, name: plan.name, at: now,
                cpuBaseline: baseline?.cpuNanoseconds ?? 0, oomBaseline: baseline?.oomKills ?? 0
            ) { row in
                row.labels = StringMapColumn.encode(plan.labels)
                row.env = StringMapColumn.encode(plan.env)
                row.autoStop = plan.intervals.autoStop
                row.autoArchive = plan.intervals.autoArchive
                row.autoDelete = plan.intervals.autoDelete
                row.isPublic = plan.isPublic
                row.autoPause = plan.autoPause
                row.expiresAt = Self.expiry(ttlMinutes: plan.ttlMinutes, at: self.now)
                row.ownerPid = plan.owner?.pid
                row.ownerStartTime = plan.owner.map { Int64($0.startTime) }
            }
            poolCounters[key, default: WarmPoolCounters()].claims += 1
            return Sandbox(claimed)
        } catch {
            // Half claimed (a firewall failure, a name taken meanwhile): nobody gets this member.
            _ = try? await destroy(member, reason: "discarded: claim failed", poolMember: WarmPool.claimingPrefix + token)
            // Only a taken name fails the create; anything else (the member went meanwhile, a
            // firewall failure) builds the sandbox cold instead.
            if AtollError.has(.nameTaken, error) { throw error }
            poolCounters[key, default: WarmPoolCounters()].misses += 1
            return nil
        }
    }

    // MARK: - Upkeep

    /// Keeps the configured pools filled until `close()`: first discards members a previous
    /// process left that cannot be trusted (with no pool configured, that is all of them), then
    /// builds one member at a time, at background priority, whenever a pool is short. A claim
    /// wakes it at once. For an embedded runner and tests; atolld runs `WarmPoolService` in its
    /// service group instead.
    public func startWarmPool() {
        guard poolTask == nil else { return }
        let service = WarmPoolService(runner: self)
        poolTask = Task { try? await service.run() }
    }

    /// The refill loop's wake-ups: a claim (and the first round) wakes it.
    func openWarmPoolWakes() -> AsyncStream<Void> {
        let (wakes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        poolWake?.finish()
        poolWake = continuation
        continuation.yield()
        return wakes
    }

    func closeWarmPoolWakes() {
        poolWake?.finish()
        poolWake = nil
    }

    /// The refill loop: until cancelled or its wake-ups end.
    nonisolated func keepWarmPoolFilled(_ wakes: AsyncStream<Void>) async {
        var iterator = wakes.makeAsyncIterator()
        while !Task.isCancelled {
            switch await refillWarmPool() {
            case .built: await Task.yield()
            case .full: if await iterator.next() == nil { return }
            case .failed:
                // Every short pool is backing off: a missing snapshot or a full disk will not
                // fix itself in a second.
                try? await Task.sleep(for: .seconds(WarmPoolCounters.backoff))
            }
        }
    }

    /// Wakes the refill loop (a member was taken).
    func wakeWarmPool() { poolWake?.yield() }

    enum RefillOutcome { case built, full, failed }

    /// Removes untrusted members, then builds one member for the first pool that is short and not
    /// backing off after a failure (so one broken key does not starve the others).
    func refillWarmPool() async -> RefillOutcome {
        await tidyWarmPool()
        let members = (try? database.poolMembers()) ?? []
        var backingOff = false
        for entry in configuration.warmPool.entries where entry.size > 0 {
            let have = members.filter { $0.pool == entry.key.description && [.started, .creating].contains($0.sandboxState) }.count
            guard have < entry.size else { continue }
            let key = entry.key
            guard (poolCounters[key]?.retryAt ?? 0) <= now else {
                backingOff = true
                continue
            }
            let plan = CreatePlan(
                id: SandboxID.random(), name: nil, organizationId: WarmPool.organization, labels: [:], env: [:], user: key.user,
                resources: key.resources, pidsMax: key.pidsMax, snapshot: key.snapshot,
                intervals: LifecycleIntervals(autoStop: 0, autoArchive: 0, autoDelete: -1), network: .open, owner: nil)
            do {
                _ = try await build(plan, pool: key.description)
                poolCounters[key, default: WarmPoolCounters()].lastError = nil
                return .built
            } catch {
                poolCounters[key, default: WarmPoolCounters()].lastError = (error as? AtollError)?.description ?? "\(error)"
                poolCounters[key, default: WarmPoolCounters()].retryAt = now + WarmPoolCounters.backoff
                backingOff = true
            }
        }
        return backingOff ? .failed : .full
    }

    /// Deletes members that must not be handed out: not started (PID 1 died, a build failed or
    /// was interrupted), a claim a dead process left half done, keys no longer configured, and
    /// members beyond a pool's size. Members of this process still being built are left alone.
    func tidyWarmPool() async {
        guard let members = try? database.poolMembers() else { return }
        var kept: [String: Int] = [:]
        for member in members {
            let building = member.sandboxState == .creating && ProcessRef.isRunning(pid: member.opPid, startTime: member.opStartTime)
            if building {
                kept[member.pool ?? "", default: 0] += 1
                continue
            }
            let size = configuration.warmPool.entries.first { $0.key.description == member.pool && $0.key.pidsMax == member.pidsMax }?.size ?? 0
            // A member started by an older Atoll has no agent: it could run nothing.
            let alive =
                member.sandboxState == .started && member.initProcess?.isRunning == true
                && ((try? Self.machine(member)).map { driver.hasAgent($0) } ?? false)
            let claiming: Bool
            if case .claiming = member.poolMembership { claiming = true } else { claiming = false }
            // A claim under way (in this process or another) is the claimer's to finish.
            if claiming, ProcessRef.isRunning(pid: member.opPid, startTime: member.opStartTime) { continue }
            if !claiming, alive, kept[member.pool ?? "", default: 0] < size {
                kept[member.pool ?? "", default: 0] += 1
                continue
            }
            _ = try? await destroy(member, reason: "discarded from the warm pool", poolMember: member.pool)
        }
    }

    /// Deletes every pool member (a harness cleaning up; `atoll pool drain` with no daemon).
    /// Returns how many were deleted.
    @discardableResult
    public func drainWarmPool() async throws -> Int {
        var deleted = 0
        for member in try database.poolMembers() {
            _ = try await destroy(member, reason: "warm pool drained", poolMember: member.pool)
            deleted += 1
        }
        return deleted
    }

    /// Every configured pool and what it holds now.
    public func warmPoolStatus() throws -> [WarmPoolStatus] {
        let members = try database.poolMembers()
        return configuration.warmPool.entries.map { entry in
            let mine = members.filter { $0.pool == entry.key.description }
            let counters = poolCounters[entry.key] ?? WarmPoolCounters()
            return WarmPoolStatus(
                key: entry.key, size: entry.size,
                ready: mine.filter { $0.sandboxState == .started }.count,
                creating: mine.filter { $0.sandboxState == .creating }.count,
                claims: counters.claims, misses: counters.misses, lastError: counters.lastError)
        }
    }

    /// Waits until every pool has its configured number of ready members (tests, benchmarks).
    public func waitForWarmPool(timeout: Double = 120) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try warmPoolStatus().allSatisfy({ $0.ready >= $0.size }) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        let status = try warmPoolStatus().map { "\($0.key): \($0.ready)/\($0.size)\($0.lastError.map { " (\($0))" } ?? "")" }
        throw AtollError(.timeout, "the warm pool did not fill within \(Int(timeout)) s: \(status.joined(separator: ", "))")
    }
}
