public import AtollCore
import AtollLinux
import AtollSandbox
public import AtollStore
public import Foundation

/// How usage is grouped in a report.
public enum UsageGrouping: Sendable, Hashable, CustomStringConvertible {
    case sandbox
    /// By the value of one label (as it was during each period; "" when unset).
    case label(String)

    /// `sandbox` or `label:KEY`.
    public init(parsing text: String) throws(AtollError) {
        if text == "sandbox" {
            self = .sandbox
        } else if text.hasPrefix("label:"), text.count > 6, text.count <= 70 {
            self = .label(String(text.dropFirst(6)))
        } else {
            throw AtollError(.invalidArgument, "groupBy must be sandbox or label:KEY, got \"\(text.prefix(70))\"")
        }
    }

    public var description: String {
        switch self {
        case .sandbox: return "sandbox"
        case .label(let key): return "label:\(key)"
        }
    }
}

/// A usage question: which sandboxes, which window, grouped how.
public struct UsageQuery: Sendable {
    public var sandboxId: String?
    public var from: Date
    public var to: Date
    public var groupBy: UsageGrouping
    public var organizationId: String?

    /// The longest window a query may span.
    public static let maximumWindow: TimeInterval = 366 * 86400

    public init(sandboxId: String? = nil, from: Date, to: Date, groupBy: UsageGrouping = .sandbox, organizationId: String? = nil) {
        self.sandboxId = sandboxId
        self.from = from
        self.to = to
        self.groupBy = groupBy
        self.organizationId = organizationId
    }
}

/// One allocation period as reported (clipped to nothing: the whole period).
public struct UsagePeriod: Sendable, Hashable {
    public var sandboxId: String
    public var allocation: Allocation
    public var startedAt: Date
    /// nil while open.
    public var endedAt: Date?
    public var endReason: String?
}

/// Usage of one sandbox (or one label value) over a window.
public struct UsageEntry: Sendable, Hashable {
    /// The sandbox id, or the label value.
    public var key: String
    public var sandboxIds: [String] = []
    /// The sandbox's name and labels (latest period in the window); empty for label groups.
    public var name: String?
    public var labels: [String: String]?
    /// Current state ("destroyed" once deleted).
    public var state: String?
    public var vcpuSecondsAllocated: Double = 0
    public var cpuSecondsUsed: Double = 0
    public var memoryGiBSecondsAllocated: Double = 0
    public var memoryBytesPeak: Int64 = 0
    public var diskGiBSecondsAllocated: Double = 0
    /// Disk bytes used at the last reading in the window (summed over a group's sandboxes).
    public var diskBytesUsed: Int64 = 0
    public var archiveGiBSecondsAllocated: Double = 0
    public var periods: [UsagePeriod] = []
    public var estimatedCost: Double = 0

    init(key: String) { self.key = key }
}

/// The answer to a `UsageQuery`.
public struct UsageReport: Sendable {
    public var from: Date
    public var to: Date
    public var groupBy: UsageGrouping
    public var prices: PriceTable
    public var items: [UsageEntry]
    public var total: UsageEntry
}

extension SandboxManager {
    // MARK: - The meter

    /// Samples every started sandbox once: CPU, memory, disk; records them with the open periods'
    /// last durable sample in one transaction. Returns how many sandboxes were sampled.
    /// Nonisolated: the cgroup reads and the fsync'ed write happen off the actor, so lifecycle
    /// calls and execs never wait for the meter.
    @discardableResult
    public nonisolated func meterRound() async -> Int {
        let at = clock.now().timeIntervalSince1970
        guard let rows = try? database.all() else { return 0 }
        var readings: [MeterReading] = []
        for row in rows where row.sandboxState == .started && row.pool == nil {
            // A sandbox stopping meanwhile has no cgroup to read: it is simply not sampled.
            guard let machine = try? Self.machine(row), let usage = try? await driver.usage(machine) else { continue }
            readings.append(
                MeterReading(
                    sandboxId: row.id, organizationId: row.organizationId, cpuNanoseconds: usage.cpuNanoseconds,
                    memoryBytes: usage.memoryBytes, memoryPeakBytes: usage.memoryPeakBytes, oomKills: usage.oomKills,
                    diskBytes: driver.diskBytes(machine.id)))
        }
        do {
            try database.recordMeterRound(readings, at: at)
        } catch {
            await countMeterFailure()
            return 0
        }
        if await compactionDue(at: at) {
            let metering = configuration.metering
            try? database.compactUsage(detailBefore: at - metering.detailSeconds, retainAfter: at - metering.retentionDays * 86400)
        }
        return readings.count
    }

    func countMeterFailure() { meterFailures += 1 }

    /// Whether usage samples are due for compaction (once a minute); marks it done.
    func compactionDue(at: Double) -> Bool {
        guard at - lastCompaction >= 60 else { return false }
        lastCompaction = at
        return true
    }

    /// Runs the meter every `configuration.metering.interval` seconds until `close()`.
    public func startMeter() {
        guard meter == nil else { return }
        let service = MeterService(runner: self)
        meter = Task { try? await service.run() }
    }

    // MARK: - Reports

    /// Allocation and measured usage per sandbox (or label value) over a window, with the
    /// estimated cost from the configured prices. Open periods count up to the window's end or
    /// now, whichever is earlier. Sandboxes deleted since are included: their periods are kept.
    /// Runs off the lifecycle actor: a long report never holds up creates, stops or execs.
    public nonisolated func usageReport(_ query: UsageQuery) throws -> UsageReport {
        let from = query.from.timeIntervalSince1970
        let to = query.to.timeIntervalSince1970
        guard from < to else { throw AtollError(.invalidArgument, "from (\(query.from)) must be before to (\(query.to))") }
        guard to - from <= UsageQuery.maximumWindow else {
            throw AtollError(.invalidArgument, "a usage window may span at most 366 days")
        }
        let organization = query.organizationId ?? configuration.organizationId
        var sandboxFilter: String?
        if let id = query.sandboxId {
            // By id or (for a sandbox that still exists) by name; a deleted one only by id.
            guard !id.isEmpty, id.utf8.count <= 128 else { throw AtollError(.invalidArgument, "invalid sandbox id \"\(id.prefix(64))\"") }
            sandboxFilter = (try? row(id, organizationId: organization))?.id ?? id
        }
        let periods = try database.periods(organizationId: organization, sandboxId: sandboxFilter, from: from, to: to)
        if let sandboxFilter, periods.isEmpty, (try? row(sandboxFilter, organizationId: organization)) == nil {
            throw AtollError(.notFound, "sandbox \(sandboxFilter.prefix(64)) not found (no usage recorded for it)")
        }
        let end = min(to, now)
        let prices = configuration.metering.prices
        let rows = Dictionary(((try? database.all()) ?? []).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var entries: [String: UsageEntry] = [:]
        var order: [String] = []
        for period in periods {
            guard let allocation = period.allocation else { continue }
            let labels = StringMapColumn.decode(period.labels)
            let key: String
            switch query.groupBy {
            case .sandbox: key = period.sandboxId
            case .label(let name): key = labels[name] ?? ""
            }
            var entry = entries[key] ?? UsageEntry(key: key)
            if entries[key] == nil { order.append(key) }
            if !entry.sandboxIds.contains(period.sandboxId) { entry.sandboxIds.append(period.sandboxId) }
            if case .sandbox = query.groupBy {
                entry.name = period.sandboxName
                entry.labels = labels
                entry.state = rows[period.sandboxId]?.state ?? SandboxState.destroyed.rawValue
            }
            let start = max(from, period.startedAt)
            let stop = min(end, period.endedAt ?? end)
            let seconds = max(0, stop - start)
            entry.vcpuSecondsAllocated += seconds * Double(allocation.cpu)
            entry.memoryGiBSecondsAllocated += seconds * Double(allocation.memoryGiB)
            entry.diskGiBSecondsAllocated += seconds * Double(allocation.diskGiB)
            entry.archiveGiBSecondsAllocated += seconds * Double(allocation.archiveBytes) / Double(1 << 30)
            entry.periods.append(
                UsagePeriod(
                    sandboxId: period.sandboxId, allocation: allocation, startedAt: Date(timeIntervalSince1970: period.startedAt),
                    endedAt: period.endedAt.map { Date(timeIntervalSince1970: $0) }, endReason: period.endReason))
            entries[key] = entry
        }
        // Measured usage, per sandbox over the window (samples belong to the sandbox, whatever
        // its labels; a group adds up its sandboxes).
        let sandboxIds = Array(Set(periods.map(\.sandboxId)))
        let measured = try database.measuredUsage(sandboxIds: sandboxIds, from: from, to: to)
        var lastGroup: [String: String] = [:]
        for key in order { for id in entries[key]!.sandboxIds { lastGroup[id] = key } }
        for (id, usage) in measured {
            guard let key = lastGroup[id], var entry = entries[key] else { continue }
            entry.cpuSecondsUsed += Double(usage.cpuNanoseconds) / 1e9
            entry.memoryBytesPeak = max(entry.memoryBytesPeak, usage.memoryPeakBytes)
            entry.diskBytesUsed += usage.diskBytes
            entries[key] = entry
        }
        var total = UsageEntry(key: "total")
        var items: [UsageEntry] = []
        for key in order {
            var entry = entries[key]!
            entry.estimatedCost = prices.cost(
                vcpuSeconds: entry.vcpuSecondsAllocated, memoryGiBSeconds: entry.memoryGiBSecondsAllocated,
                diskGiBSeconds: entry.diskGiBSecondsAllocated, archiveGiBSeconds: entry.archiveGiBSecondsAllocated)
            total.sandboxIds += entry.sandboxIds
            total.vcpuSecondsAllocated += entry.vcpuSecondsAllocated
            total.cpuSecondsUsed += entry.cpuSecondsUsed
            total.memoryGiBSecondsAllocated += entry.memoryGiBSecondsAllocated
            total.memoryBytesPeak = max(total.memoryBytesPeak, entry.memoryBytesPeak)
            total.diskGiBSecondsAllocated += entry.diskGiBSecondsAllocated
            total.diskBytesUsed += entry.diskBytesUsed
            total.archiveGiBSecondsAllocated += entry.archiveGiBSecondsAllocated
            total.estimatedCost += entry.estimatedCost
            items.append(entry)
        }
        return UsageReport(from: query.from, to: query.to, groupBy: query.groupBy, prices: prices, items: items, total: total)
    }

    /// Running totals and current state of an organization's sandboxes (nil: all), for
    /// `/metrics`.
    /// A sandbox's measurements over [from, to] (see `SandboxDatabase.usageSeries`), with the
    /// sandbox as it is now (its limits).
    public nonisolated func usageSeries(_ idOrName: String, from: Date, to: Date, organizationId: String? = nil) throws -> (Sandbox, [UsagePoint]) {
        let row = try row(idOrName, organizationId: organizationId)
        return (Sandbox(row), try database.usageSeries(sandboxId: row.id, from: from.timeIntervalSince1970, to: to.timeIntervalSince1970))
    }

    public func meters(organizationId: String? = nil) throws -> [MeterRow] {
        try database.meters(organizationId: organizationId)
    }
}
