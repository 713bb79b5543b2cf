/// The resources a sandbox is allocated, in Daytona's units: whole vCPUs and GiB.
public struct Resources: Sendable, Hashable, Codable {
    /// Virtual CPUs (the cgroup CPU quota, in whole CPUs).
    public var cpu: Int
    /// Memory limit in GiB (swap is off).
    public var memoryGiB: Int
    /// Disk size in GiB (the sandbox's own ext4 image; a hard cap).
    public var diskGiB: Int

    public init(cpu: Int, memoryGiB: Int, diskGiB: Int) {
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
    }

    /// Daytona's defaults: 1 vCPU, 1 GiB memory, 3 GiB disk.
    public static let defaults = Resources(cpu: 1, memoryGiB: 1, diskGiB: 3)
}

/// Per-sandbox maximums, configurable by the operator. Minimums are always 1.
public struct ResourceLimits: Sendable, Hashable, Codable {
    public var maxCPU: Int
    public var maxMemoryGiB: Int
    public var maxDiskGiB: Int

    public init(maxCPU: Int, maxMemoryGiB: Int, maxDiskGiB: Int) {
        self.maxCPU = maxCPU
        self.maxMemoryGiB = maxMemoryGiB
        self.maxDiskGiB = maxDiskGiB
    }

    /// Daytona's per-sandbox maximums: 4 vCPUs, 8 GiB memory, 10 GiB disk.
    public static let defaults = ResourceLimits(maxCPU: 4, maxMemoryGiB: 8, maxDiskGiB: 10)

    /// Checks `resources` against these limits; the error names the field, the value and the limit.
    public func validate(_ resources: Resources) throws(AtollError) {
        try Self.check("cpu", resources.cpu, max: maxCPU, unit: "vCPUs")
        try Self.check("memory", resources.memoryGiB, max: maxMemoryGiB, unit: "GiB")
        try Self.check("disk", resources.diskGiB, max: maxDiskGiB, unit: "GiB")
    }

    private static func check(_ field: String, _ value: Int, max: Int, unit: String) throws(AtollError) {
        guard value >= 1 else {
            throw AtollError(.invalidArgument, "\(field) must be at least 1 \(unit), got \(value)")
        }
        guard value <= max else {
            throw AtollError(.invalidArgument, "\(field) \(value) exceeds the per-sandbox maximum of \(max) \(unit)")
        }
    }
}
