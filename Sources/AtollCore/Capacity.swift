/// How much a host gives its sandboxes, and how much one organization may hold. Creates, starts,
/// resizes and recovers that would go beyond either are refused with an error naming the limit,
/// the amount held and the amount asked for.
///
/// What counts is what sandboxes are *allocated* (their vCPUs and memory while they run, their
/// disk while they have one), as Daytona bills it — not what they use at the moment.
public struct HostCapacity: Sendable, Hashable {
    /// vCPUs of running sandboxes at most `cpuOvercommit` × the host's CPUs (0: no limit).
    public var cpuOvercommit: Double
    /// Memory of running sandboxes at most `memoryOvercommit` × (the host's memory − the reserve)
    /// (0: no limit).
    public var memoryOvercommit: Double
    /// Disks at most `diskOvercommit` × (free space of the data directory's filesystem plus what
    /// sandbox disks occupy already − the reserve) (0: no limit). Disks are sparse, so this bounds
    /// what they could grow to.
    public var diskOvercommit: Double
    /// What the host keeps for itself: memory (at least 1 GiB or a tenth) and disk (2 GiB).
    public static let memoryReserveGiB = 1.0
    public static let diskReserveGiB = 2.0

    public init(cpuOvercommit: Double = 8, memoryOvercommit: Double = 1, diskOvercommit: Double = 1) {
        self.cpuOvercommit = cpuOvercommit
        self.memoryOvercommit = memoryOvercommit
        self.diskOvercommit = diskOvercommit
    }

    public static let defaults = HostCapacity()
    /// No limit at all (tests on fakes, benchmarks that measure density).
    public static let unlimited = HostCapacity(cpuOvercommit: 0, memoryOvercommit: 0, diskOvercommit: 0)
}

/// What one organization may hold at once (0: no limit beyond the host's capacity).
public struct OrganizationQuota: Sendable, Hashable {
    public var maxCPU: Int
    public var maxMemoryGiB: Int
    public var maxDiskGiB: Int
    /// Sandboxes in any state but deleted.
    public var maxSandboxes: Int

    public init(maxCPU: Int = 0, maxMemoryGiB: Int = 0, maxDiskGiB: Int = 0, maxSandboxes: Int = 0) {
        self.maxCPU = maxCPU
        self.maxMemoryGiB = maxMemoryGiB
        self.maxDiskGiB = maxDiskGiB
        self.maxSandboxes = maxSandboxes
    }

    public static let unlimited = OrganizationQuota()
}

/// The host's size as admission control sees it.
public struct HostSize: Sendable, Hashable {
    public var cpus: Int
    public var memoryGiB: Double
    /// Free space of the data directory's filesystem plus what sandbox disks occupy already.
    public var diskGiB: Double

    public init(cpus: Int, memoryGiB: Double, diskGiB: Double) {
        self.cpus = cpus
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
    }
}

/// Resources held, as admission control adds them up.
public struct Holdings: Sendable, Hashable {
    /// Of running sandboxes (started, or on their way to or from it).
    public var cpu = 0
    public var memoryGiB = 0
    /// Of sandboxes that have a disk.
    public var diskGiB = 0
    public var sandboxes = 0

    public init(cpu: Int = 0, memoryGiB: Int = 0, diskGiB: Int = 0, sandboxes: Int = 0) {
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
        self.sandboxes = sandboxes
    }
}

/// A request for more resources: the increase of each.
public struct AdmissionRequest: Sendable, Hashable {
    public var cpu: Int
    public var memoryGiB: Int
    public var diskGiB: Int
    /// A new sandbox (counts against the organization's sandbox quota).
    public var newSandbox: Bool

    public init(cpu: Int, memoryGiB: Int, diskGiB: Int, newSandbox: Bool) {
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
        self.newSandbox = newSandbox
    }
}

public enum Admission {
    /// Checks `request` against the host's capacity (`host` and `held` across the host) and the
    /// organization's quota (`organizationHeld`); the error names the limit and how to change it.
    public static func check(
        _ request: AdmissionRequest, capacity: HostCapacity, host: HostSize, held: Holdings, quota: OrganizationQuota,
        organization: String, organizationHeld: Holdings
    ) throws(AtollError) {
        func exhausted(_ what: String, _ unit: String, held: Double, asked: Int, limit: Double, how: String) -> AtollError {
            AtollError(
                .resourceExhausted,
                "this host has no room for \(asked) more \(unit) of \(what): sandboxes hold \(Int(held)) of the \(Int(limit)) it gives them (\(how))")
        }
        if request.cpu > 0, capacity.cpuOvercommit > 0 {
            let limit = (Double(host.cpus) * capacity.cpuOvercommit).rounded(.down)
            if Double(held.cpu + request.cpu) > limit {
                throw exhausted(
                    "CPU", "vCPUs", held: Double(held.cpu), asked: request.cpu, limit: limit,
                    how: "\(host.cpus) CPUs × \(capacity.cpuOvercommit.formatted); ATOLL_CPU_OVERCOMMIT changes the ratio")
            }
        }
        if request.memoryGiB > 0, capacity.memoryOvercommit > 0 {
            let reserve = max(HostCapacity.memoryReserveGiB, host.memoryGiB / 10)
            let limit = ((host.memoryGiB - reserve) * capacity.memoryOvercommit).rounded(.down)
            if Double(held.memoryGiB + request.memoryGiB) > limit {
                throw exhausted(
                    "memory", "GiB", held: Double(held.memoryGiB), asked: request.memoryGiB, limit: limit,
                    how:
                        "\(Int(host.memoryGiB)) GiB less a reserve of \(Int(reserve.rounded(.up))) GiB, × \(capacity.memoryOvercommit.formatted); ATOLL_MEMORY_OVERCOMMIT changes the ratio"
                )
            }
        }
        if request.diskGiB > 0, capacity.diskOvercommit > 0 {
            let limit = ((host.diskGiB - HostCapacity.diskReserveGiB) * capacity.diskOvercommit).rounded(.down)
            if Double(held.diskGiB + request.diskGiB) > limit {
                throw exhausted(
                    "disk", "GiB", held: Double(held.diskGiB), asked: request.diskGiB, limit: limit,
                    how:
                        "free space of the data directory's filesystem and the sandbox disks on it, less \(Int(HostCapacity.diskReserveGiB)) GiB, × \(capacity.diskOvercommit.formatted); ATOLL_DISK_OVERCOMMIT changes the ratio"
                )
            }
        }
        func over(_ what: String, _ unit: String, _ held: Int, _ asked: Int, _ limit: Int, _ key: String) -> AtollError {
            AtollError(.quotaExceeded, "organization \(organization) would hold \(held + asked) \(unit) of \(what), over its quota of \(limit) (\(key))")
        }
        if quota.maxCPU > 0, request.cpu > 0, organizationHeld.cpu + request.cpu > quota.maxCPU {
            throw over("CPU", "vCPUs", organizationHeld.cpu, request.cpu, quota.maxCPU, "ATOLL_ORG_MAX_CPU")
        }
        if quota.maxMemoryGiB > 0, request.memoryGiB > 0, organizationHeld.memoryGiB + request.memoryGiB > quota.maxMemoryGiB {
            throw over("memory", "GiB", organizationHeld.memoryGiB, request.memoryGiB, quota.maxMemoryGiB, "ATOLL_ORG_MAX_MEMORY_GIB")
        }
        if quota.maxDiskGiB > 0, request.diskGiB > 0, organizationHeld.diskGiB + request.diskGiB > quota.maxDiskGiB {
            throw over("disk", "GiB", organizationHeld.diskGiB, request.diskGiB, quota.maxDiskGiB, "ATOLL_ORG_MAX_DISK_GIB")
        }
        if quota.maxSandboxes > 0, request.newSandbox, organizationHeld.sandboxes + 1 > quota.maxSandboxes {
            throw AtollError(
                .quotaExceeded, "organization \(organization) already has \(organizationHeld.sandboxes) sandboxes, its quota (ATOLL_ORG_MAX_SANDBOXES)")
        }
    }
}

extension Double {
    /// "8" rather than "8.0"; "1.5" stays.
    var formatted: String { self == rounded() ? String(Int(self)) : String(self) }
}
