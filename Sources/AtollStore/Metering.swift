public import AtollCore
import Foundation
public import GRDB

/// One allocation period: what a sandbox held from `startedAt` to `endedAt` (open while nil).
/// Periods are opened and closed in the same transaction as the state change that causes them,
/// so a crash can never leave a state without its period or a period without its state.
public struct AllocationPeriodRow: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "allocationPeriod"
    public var id: Int64?
    public var sandboxId: String
    public var organizationId: String
    /// The sandbox's name and labels when the period opened (a label change rolls the period).
    public var sandboxName: String
    public var labels: String
    /// `compute`, `disk` or `archive`.
    public var kind: String
    public var cpu: Int
    public var memoryGiB: Int
    public var diskGiB: Int
    public var archiveBytes: Int64
    public var startedAt: Double
    public var endedAt: Double?
    /// The last time a running meter saw this period open (durable): a period whose sandbox
    /// changed state while no runner watched is closed here, not at the time it was noticed.
    public var lastSampleAt: Double
    public var endReason: String?

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    public var allocation: Allocation? {
        Allocation(kind: kind, cpu: cpu, memoryGiB: memoryGiB, diskGiB: diskGiB, archiveBytes: archiveBytes)
    }
}

/// A measurement of a started sandbox: CPU time used since the previous sample, memory and disk.
public struct UsageSampleRow: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "usageSample"
    public var sandboxId: String
    /// Whole seconds since 1970.
    public var at: Int64
    public var cpuNanoseconds: Int64
    public var memoryBytes: Int64
    public var memoryPeakBytes: Int64
    public var diskBytes: Int64
}

/// One point of a sandbox's usage: the CPU time used in the `seconds` before `at`, and memory
/// and disk at `at` (for a minute's rollup: the most memory seen, the last disk size).
public struct UsagePoint: Sendable, Hashable {
    public var at: Int64
    public var seconds: Int64
    public var cpuNanoseconds: Int64
    public var memoryBytes: Int64
    public var diskBytes: Int64
}

/// Samples older than the detail window, folded into one row per sandbox and minute.
public struct UsageRollupRow: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "usageRollup"
    public var sandboxId: String
    /// Start of the minute, seconds since 1970.
    public var minute: Int64
    public var cpuNanoseconds: Int64
    public var memoryMaxBytes: Int64
    public var diskMaxBytes: Int64
    public var diskLastBytes: Int64
    public var samples: Int64
}

/// Running totals per sandbox: monotonic counters for `/metrics` (they survive cgroup
/// re-creation and restarts) and the last reading, to turn cumulative counters into deltas.
public struct MeterRow: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "meter"
    public var sandboxId: String
    public var organizationId: String
    public var lastCpuNanoseconds: Int64
    public var cpuNanosecondsTotal: Int64
    public var lastOomKills: Int64
    public var oomKillsTotal: Int64
    public var memoryBytes: Int64
    public var diskBytes: Int64
    public var at: Double
}

/// One reading of a started sandbox's cgroup and disk.
public struct MeterReading: Sendable, Hashable {
    public var sandboxId: String
    public var organizationId: String
    /// Cumulative CPU time of the sandbox's cgroup.
    public var cpuNanoseconds: UInt64
    public var memoryBytes: UInt64
    public var memoryPeakBytes: UInt64
    public var oomKills: UInt64
    public var diskBytes: UInt64

    public init(
        sandboxId: String, organizationId: String, cpuNanoseconds: UInt64, memoryBytes: UInt64, memoryPeakBytes: UInt64,
        oomKills: UInt64, diskBytes: UInt64
    ) {
        self.sandboxId = sandboxId
        self.organizationId = organizationId
        self.cpuNanoseconds = cpuNanoseconds
        self.memoryBytes = memoryBytes
        self.memoryPeakBytes = memoryPeakBytes
        self.oomKills = oomKills
        self.diskBytes = diskBytes
    }
}

/// Measured usage of one sandbox over a window.
public struct MeasuredUsage: Sendable, Hashable {
    public var cpuNanoseconds: Int64 = 0
    public var memoryPeakBytes: Int64 = 0
    /// The last disk reading in the window.
    public var diskBytes: Int64 = 0
    public var lastDiskAt: Int64 = 0

    public init() {}
}

/// Where a period boundary falls for a state change.
public enum PeriodBoundary: Sendable {
    /// At the time of the change.
    case now
    /// At the open period's last durable sample: the change happened while no runner watched
    /// (reconciling after a crash), so nothing after that sample is billed or left unbilled twice.
    case lastSample
}

extension SandboxDatabase {
    static func registerMeteringMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-metering") { db in
            try db.create(table: "allocationPeriod") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("sandboxId", .text).notNull().indexed()
                t.column("organizationId", .text).notNull()
                t.column("sandboxName", .text).notNull()
                t.column("labels", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("cpu", .integer).notNull()
                t.column("memoryGiB", .integer).notNull()
                t.column("diskGiB", .integer).notNull()
                t.column("archiveBytes", .integer).notNull()
                t.column("startedAt", .double).notNull()
                t.column("endedAt", .double)
                t.column("lastSampleAt", .double).notNull()
                t.column("endReason", .text)
            }
            try db.create(index: "allocationPeriod_org_time", on: "allocationPeriod", columns: ["organizationId", "startedAt"])
            // At most one open period per sandbox, enforced by the database itself.
            try db.execute(sql: "CREATE UNIQUE INDEX allocationPeriod_open ON allocationPeriod(sandboxId) WHERE endedAt IS NULL")
            try db.create(table: "usageSample", options: [.withoutRowID]) { t in
                t.column("sandboxId", .text).notNull()
                t.column("at", .integer).notNull()
                t.column("cpuNanoseconds", .integer).notNull()
                t.column("memoryBytes", .integer).notNull()
                t.column("memoryPeakBytes", .integer).notNull()
                t.column("diskBytes", .integer).notNull()
                t.primaryKey(["sandboxId", "at"])
            }
            try db.create(index: "usageSample_at", on: "usageSample", columns: ["at"])
            try db.create(table: "usageRollup", options: [.withoutRowID]) { t in
                t.column("sandboxId", .text).notNull()
                t.column("minute", .integer).notNull()
                t.column("cpuNanoseconds", .integer).notNull()
                t.column("memoryMaxBytes", .integer).notNull()
                t.column("diskMaxBytes", .integer).notNull()
                t.column("diskLastBytes", .integer).notNull()
                t.column("samples", .integer).notNull()
                t.primaryKey(["sandboxId", "minute"])
            }
            try db.create(index: "usageRollup_minute", on: "usageRollup", columns: ["minute"])
            try db.create(table: "meter") { t in
                t.primaryKey("sandboxId", .text)
                t.column("organizationId", .text).notNull()
                t.column("lastCpuNanoseconds", .integer).notNull()
                t.column("cpuNanosecondsTotal", .integer).notNull()
                t.column("lastOomKills", .integer).notNull()
                t.column("oomKillsTotal", .integer).notNull()
                t.column("memoryBytes", .integer).notNull()
                t.column("diskBytes", .integer).notNull()
                t.column("at", .double).notNull()
            }
            // Sandboxes that exist already get the period of the state they are in.
            let now = Date().timeIntervalSince1970
            for row in try SandboxRow.fetchAll(db) {
                try applyAllocation(db, row: row, at: now, boundary: .now, reason: "metering enabled")
            }
        }
    }

    /// Makes the open allocation period agree with the sandbox's state: called in the same
    /// transaction as every change of a sandbox row.
    static func applyAllocation(_ db: Database, row: SandboxRow, at: Double, boundary: PeriodBoundary, reason: String?) throws {
        let open = try AllocationPeriodRow.filter(Column("sandboxId") == row.id && Column("endedAt") == nil).fetchOne(db)
        // A pooled sandbox is allocated to nobody: its periods start when it is claimed.
        let rule =
            row.pool != nil
            ? .none
            : AllocationRule.forState(
                row.sandboxState, cpu: row.cpu, memoryGiB: row.memoryGiB,
                diskGiB: row.diskGiB, archiveBytes: row.archiveBytes)
        let wanted: Allocation?
        switch rule {
        case .keep:
            // Mid-transition: the period stays, unless the sandbox was renamed or relabelled.
            guard let open, let allocation = open.allocation else { return }
            wanted = allocation
        case .none:
            wanted = nil
        case .allocate(let allocation):
            wanted = allocation
        }
        if let open, open.allocation == wanted, open.sandboxName == row.name, open.labels == row.labels { return }
        var start = at
        if var open {
            let end = boundary == .lastSample ? min(at, max(open.startedAt, open.lastSampleAt)) : at
            open.endedAt = max(open.startedAt, end)
            open.endReason = reason
            try open.update(db)
            start = open.endedAt!
        }
        guard let wanted else { return }
        var period = AllocationPeriodRow(
            id: nil, sandboxId: row.id, organizationId: row.organizationId, sandboxName: row.name, labels: row.labels,
            kind: wanted.kind, cpu: wanted.cpu, memoryGiB: wanted.memoryGiB, diskGiB: wanted.diskGiB, archiveBytes: wanted.archiveBytes,
            startedAt: start, endedAt: nil, lastSampleAt: start, endReason: nil)
        try period.insert(db)
    }

    /// Closes a deleted sandbox's open period (its periods and samples stay: they are the bill).
    static func closeAllocation(_ db: Database, sandboxId: String, at: Double, reason: String) throws {
        try db.execute(
            sql: "UPDATE allocationPeriod SET endedAt = MAX(startedAt, ?), endReason = ? WHERE sandboxId = ? AND endedAt IS NULL",
            arguments: [at, reason, sandboxId])
        try db.execute(sql: "DELETE FROM meter WHERE sandboxId = ?", arguments: [sandboxId])
    }

    // MARK: - The meter's writes

    /// Records one round of readings at `at` in one transaction: a sample per sandbox (CPU as the
    /// delta since the previous reading, so a re-created cgroup or a restart is no negative
    /// jump), the running totals, every open period's last durable sample, and the daily
    /// rollover of periods that started before today (UTC).
    public func recordMeterRound(_ readings: [MeterReading], at: Double) throws {
        try write { db in
            let second = Int64(at.rounded(.down))
            for reading in readings {
                // The readings were taken outside this transaction: a sandbox deleted or stopped
                // since gets no meter row or sample back.
                guard let row = try SandboxRow.fetchOne(db, key: reading.sandboxId), row.sandboxState == .started, row.pool == nil else {
                    continue
                }
                let cpu = Int64(clamping: reading.cpuNanoseconds)
                let ooms = Int64(clamping: reading.oomKills)
                // A sandbox's first reading counts from zero: its cgroup was made at its first start.
                var meter =
                    try MeterRow.fetchOne(db, key: reading.sandboxId)
                    ?? MeterRow(
                        sandboxId: reading.sandboxId, organizationId: reading.organizationId, lastCpuNanoseconds: 0,
                        cpuNanosecondsTotal: 0, lastOomKills: 0, oomKillsTotal: 0, memoryBytes: 0, diskBytes: 0, at: at)
                // A counter that went down belongs to a new cgroup: all of it is new.
                let cpuDelta = cpu >= meter.lastCpuNanoseconds ? cpu - meter.lastCpuNanoseconds : cpu
                let oomDelta = ooms >= meter.lastOomKills ? ooms - meter.lastOomKills : ooms
                meter.lastCpuNanoseconds = cpu
                meter.cpuNanosecondsTotal += cpuDelta
                meter.lastOomKills = ooms
                meter.oomKillsTotal += oomDelta
                meter.memoryBytes = Int64(clamping: reading.memoryBytes)
                meter.diskBytes = Int64(clamping: reading.diskBytes)
                meter.at = at
                try meter.save(db)
                let sample = UsageSampleRow(
                    sandboxId: reading.sandboxId, at: second, cpuNanoseconds: cpuDelta, memoryBytes: meter.memoryBytes,
                    memoryPeakBytes: Int64(clamping: reading.memoryPeakBytes), diskBytes: meter.diskBytes)
                // Two rounds in one second (a slow tick catching up) add up.
                if var existing = try UsageSampleRow.fetchOne(db, key: ["sandboxId": reading.sandboxId, "at": second]) {
                    existing.cpuNanoseconds += sample.cpuNanoseconds
                    existing.memoryBytes = max(existing.memoryBytes, sample.memoryBytes)
                    existing.memoryPeakBytes = max(existing.memoryPeakBytes, sample.memoryPeakBytes)
                    existing.diskBytes = sample.diskBytes
                    try existing.update(db)
                } else {
                    try sample.insert(db)
                }
            }
            try db.execute(sql: "UPDATE allocationPeriod SET lastSampleAt = MAX(lastSampleAt, ?) WHERE endedAt IS NULL", arguments: [at])
            try Self.rollOverDays(db, at: at)
        }
    }

    /// Splits open periods at every UTC midnight between their start and `at`.
    static func rollOverDays(_ db: Database, at: Double) throws {
        let today = UTCDay.start(of: at)
        for open in try AllocationPeriodRow.filter(Column("endedAt") == nil && Column("startedAt") < today).fetchAll(db) {
            var current = open
            while UTCDay.start(of: current.startedAt) < today {
                let midnight = UTCDay.start(of: current.startedAt) + 86400
                var closed = current
                closed.endedAt = midnight
                closed.endReason = "daily rollover"
                closed.lastSampleAt = min(closed.lastSampleAt, midnight)
                try closed.update(db)
                var next = current
                next.id = nil
                next.startedAt = midnight
                next.endedAt = nil
                next.endReason = nil
                next.lastSampleAt = max(current.lastSampleAt, midnight)
                try next.insert(db)
                current = next
            }
        }
    }

    /// Folds per-second samples older than `detailBefore` into per-minute rows and deletes
    /// samples, rollups and closed periods older than `retainAfter`: storage stays bounded.
    public func compactUsage(detailBefore: Double, retainAfter: Double) throws {
        try write { db in
            let cutoff = Int64(detailBefore.rounded(.down)) / 60 * 60  // whole minutes only
            try db.execute(
                sql: """
                    INSERT INTO usageRollup (sandboxId, minute, cpuNanoseconds, memoryMaxBytes, diskMaxBytes, diskLastBytes, samples)
                    SELECT sandboxId, at / 60 * 60, SUM(cpuNanoseconds), MAX(memoryBytes), MAX(diskBytes),
                           (SELECT s2.diskBytes FROM usageSample s2 WHERE s2.sandboxId = s.sandboxId AND s2.at / 60 = s.at / 60 ORDER BY s2.at DESC LIMIT 1),
                           COUNT(*)
                    FROM usageSample s WHERE at < ? GROUP BY sandboxId, at / 60
                    ON CONFLICT(sandboxId, minute) DO UPDATE SET
                        cpuNanoseconds = cpuNanoseconds + excluded.cpuNanoseconds,
                        memoryMaxBytes = MAX(memoryMaxBytes, excluded.memoryMaxBytes),
                        diskMaxBytes = MAX(diskMaxBytes, excluded.diskMaxBytes),
                        diskLastBytes = excluded.diskLastBytes,
                        samples = samples + excluded.samples
                    """, arguments: [cutoff])
            try db.execute(sql: "DELETE FROM usageSample WHERE at < ?", arguments: [cutoff])
            let retain = Int64(retainAfter.rounded(.down))
            try db.execute(sql: "DELETE FROM usageRollup WHERE minute < ?", arguments: [retain])
            try db.execute(sql: "DELETE FROM allocationPeriod WHERE endedAt IS NOT NULL AND endedAt < ?", arguments: [retainAfter])
        }
    }

    // MARK: - Reads

    /// Periods of an organization overlapping [from, to], optionally of one sandbox.
    public func periods(organizationId: String, sandboxId: String? = nil, from: Double, to: Double) throws -> [AllocationPeriodRow] {
        try read { db in
            var request = AllocationPeriodRow.filter(
                Column("organizationId") == organizationId && Column("startedAt") < to
                    && (Column("endedAt") == nil || Column("endedAt") > from))
            if let sandboxId { request = request.filter(Column("sandboxId") == sandboxId) }
            return try request.order(Column("sandboxId"), Column("startedAt")).fetchAll(db)
        }
    }

    /// Measured usage per sandbox over [from, to): per-second samples where they are kept,
    /// per-minute rollups beyond.
    public func measuredUsage(sandboxIds: [String], from: Double, to: Double) throws -> [String: MeasuredUsage] {
        try read { db in
            var result: [String: MeasuredUsage] = [:]
            let lower = Int64(from.rounded(.down))
            let upper = Int64(to.rounded(.up))
            for id in sandboxIds {
                var usage = MeasuredUsage()
                if let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT COALESCE(SUM(cpuNanoseconds), 0), COALESCE(MAX(memoryBytes), 0) FROM usageSample
                        WHERE sandboxId = ? AND at > ? AND at <= ?
                        """, arguments: [id, lower, upper])
                {
                    usage.cpuNanoseconds += row[0] as Int64
                    usage.memoryPeakBytes = max(usage.memoryPeakBytes, row[1] as Int64)
                }
                if let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT COALESCE(SUM(cpuNanoseconds), 0), COALESCE(MAX(memoryMaxBytes), 0) FROM usageRollup
                        WHERE sandboxId = ? AND minute >= ? AND minute < ?
                        """, arguments: [id, lower / 60 * 60, upper])
                {
                    usage.cpuNanoseconds += row[0] as Int64
                    usage.memoryPeakBytes = max(usage.memoryPeakBytes, row[1] as Int64)
                }
                if let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT at, diskBytes FROM usageSample WHERE sandboxId = ? AND at > ? AND at <= ?
                        UNION ALL SELECT minute + 59, diskLastBytes FROM usageRollup WHERE sandboxId = ? AND minute >= ? AND minute < ?
                        ORDER BY 1 DESC LIMIT 1
                        """, arguments: [id, lower, upper, id, lower / 60 * 60, upper])
                {
                    usage.lastDiskAt = row[0]
                    usage.diskBytes = row[1]
                }
                result[id] = usage
            }
            return result
        }
    }

    /// A sandbox's measurements over [from, to], oldest first: per-minute rollups where only
    /// those are kept, then the per-second samples (for charts and Daytona's metrics calls).
    public func usageSeries(sandboxId: String, from: Double, to: Double) throws -> [UsagePoint] {
        try read { db in
            let lower = Int64(from.rounded(.down))
            let upper = Int64(to.rounded(.up))
            var points = try UsageRollupRow.filter(Column("sandboxId") == sandboxId && Column("minute") >= lower / 60 * 60 && Column("minute") < upper)
                .order(Column("minute")).fetchAll(db)
                .map {
                    UsagePoint(at: $0.minute + 60, seconds: 60, cpuNanoseconds: $0.cpuNanoseconds, memoryBytes: $0.memoryMaxBytes, diskBytes: $0.diskLastBytes)
                }
            var previous: Int64?
            for sample in try UsageSampleRow.filter(Column("sandboxId") == sandboxId && Column("at") >= lower && Column("at") <= upper)
                .order(Column("at")).fetchAll(db)
            {
                let span = previous.map { max(1, sample.at - $0) } ?? 1
                previous = sample.at
                points.append(
                    UsagePoint(
                        at: sample.at, seconds: span, cpuNanoseconds: sample.cpuNanoseconds, memoryBytes: sample.memoryBytes, diskBytes: sample.diskBytes))
            }
            return points
        }
    }

    /// Running totals of an organization's sandboxes (nil: every organization).
    public func meters(organizationId: String? = nil) throws -> [MeterRow] {
        try read { db in
            var request = MeterRow.all()
            if let organizationId { request = request.filter(Column("organizationId") == organizationId) }
            return try request.fetchAll(db)
        }
    }
}
