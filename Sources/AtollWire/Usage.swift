public import Foundation

/// `GET /api/usage` (an Atoll extension; see docs/atoll-openapi.json).
public struct UsageResponse: Codable, Sendable {
    public var from: String
    public var to: String
    /// `sandbox` or `label:KEY`.
    public var groupBy: String
    public var prices: PricesDTO
    public var items: [UsageItemDTO]
    public var total: UsageItemDTO

    public init(from: String, to: String, groupBy: String, prices: PricesDTO, items: [UsageItemDTO], total: UsageItemDTO) {
        self.from = from
        self.to = to
        self.groupBy = groupBy
        self.prices = prices
        self.items = items
        self.total = total
    }
}

public struct PricesDTO: Codable, Sendable {
    public var currency: String
    public var vcpuSecond: Double
    public var memoryGiBSecond: Double
    public var diskGiBSecond: Double
    public var archiveGiBMonth: Double

    public init(currency: String, vcpuSecond: Double, memoryGiBSecond: Double, diskGiBSecond: Double, archiveGiBMonth: Double) {
        self.currency = currency
        self.vcpuSecond = vcpuSecond
        self.memoryGiBSecond = memoryGiBSecond
        self.diskGiBSecond = diskGiBSecond
        self.archiveGiBMonth = archiveGiBMonth
    }
}

/// One sandbox (grouped by sandbox) or one label value (grouped by label), or the total.
public struct UsageItemDTO: Codable, Sendable {
    public var sandboxId: String?
    /// The label value, when grouped by label.
    public var label: String?
    public var sandboxIds: [String]
    public var name: String?
    public var labels: [String: String]?
    public var state: String?
    public var vcpuSecondsAllocated: Double
    public var cpuSecondsUsed: Double
    public var memoryGiBSecondsAllocated: Double
    public var memoryBytesPeak: Int64
    public var diskGiBSecondsAllocated: Double
    public var diskBytesUsed: Int64
    public var archiveGiBSecondsAllocated: Double
    public var estimatedCost: Double
    public var periods: [UsagePeriodDTO]?

    public init(
        sandboxId: String?, label: String?, sandboxIds: [String], name: String?, labels: [String: String]?, state: String?,
        vcpuSecondsAllocated: Double, cpuSecondsUsed: Double, memoryGiBSecondsAllocated: Double, memoryBytesPeak: Int64,
        diskGiBSecondsAllocated: Double, diskBytesUsed: Int64, archiveGiBSecondsAllocated: Double, estimatedCost: Double,
        periods: [UsagePeriodDTO]?
    ) {
        self.sandboxId = sandboxId
        self.label = label
        self.sandboxIds = sandboxIds
        self.name = name
        self.labels = labels
        self.state = state
        self.vcpuSecondsAllocated = vcpuSecondsAllocated
        self.cpuSecondsUsed = cpuSecondsUsed
        self.memoryGiBSecondsAllocated = memoryGiBSecondsAllocated
        self.memoryBytesPeak = memoryBytesPeak
        self.diskGiBSecondsAllocated = diskGiBSecondsAllocated
        self.diskBytesUsed = diskBytesUsed
        self.archiveGiBSecondsAllocated = archiveGiBSecondsAllocated
        self.estimatedCost = estimatedCost
        self.periods = periods
    }
}

/// An allocation period: `compute` (started: vCPUs, memory and disk), `disk` (stopped) or
/// `archive` (archived: the archive's bytes).
public struct UsagePeriodDTO: Codable, Sendable {
    public var sandboxId: String
    public var kind: String
    public var cpu: Int
    public var memoryGiB: Int
    public var diskGiB: Int
    public var archiveBytes: Int64
    public var startedAt: String
    /// nil while the period is open.
    public var endedAt: String?
    public var endReason: String?

    public init(
        sandboxId: String, kind: String, cpu: Int, memoryGiB: Int, diskGiB: Int, archiveBytes: Int64, startedAt: String,
        endedAt: String?, endReason: String?
    ) {
        self.sandboxId = sandboxId
        self.kind = kind
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
        self.archiveBytes = archiveBytes
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.endReason = endReason
    }
}

/// Times in usage queries (`from`, `to`, `--since`, `--until`).
public enum UsageTime {
    /// ISO 8601 with or without fractional seconds (`2026-11-30T00:00:00Z`), or nil.
    public static func iso8601(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return plain.date(from: text) ?? fractional.date(from: text)
    }
}

/// One warm pool in `GET /api/warm-pool` (an Atoll extension; see docs/atoll-openapi.json).
public struct WarmPoolDTO: Codable, Sendable {
    public var snapshot: String
    public var cpu: Int
    public var memory: Int
    public var disk: Int
    public var user: String
    /// Configured number of ready members.
    public var size: Int
    public var ready: Int
    public var creating: Int
    /// Creates served from the pool and matching creates built cold, since the daemon started.
    public var claims: Int
    public var misses: Int
    public var lastError: String?

    public init(
        snapshot: String, cpu: Int, memory: Int, disk: Int, user: String, size: Int, ready: Int, creating: Int,
        claims: Int, misses: Int, lastError: String?
    ) {
        self.snapshot = snapshot
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.user = user
        self.size = size
        self.ready = ready
        self.creating = creating
        self.claims = claims
        self.misses = misses
        self.lastError = lastError
    }
}
