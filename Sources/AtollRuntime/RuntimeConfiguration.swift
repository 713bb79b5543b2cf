import AtollCore
import AtollLinux
import Foundation

/// Settings of a sandbox runtime. The defaults are those of a production host; tests point
/// every location at their own temporary directory and their own cgroup name and id region.
public struct RuntimeConfiguration: Sendable {
    /// Root of Atoll's state: sandbox records and disks, id-range claims.
    public var dataDirectory: String
    /// Where snapshots live (`<name>/rootfs`, `<name>/snapshot.json`).
    public var snapshotsDirectory: String
    /// Top-level cgroup name under each hierarchy root.
    public var cgroupName: String
    /// First host uid/gid handed to sandboxes, and how many 65536-id slots follow it.
    public var idRangeStart: UInt32
    public var idRangeSlots: Int
    /// Per-sandbox maximum resources.
    public var limits: ResourceLimits
    /// Task limit per sandbox.
    public var pidsMax: Int
    /// Output kept per stream of an exec; the rest is dropped and the result marked truncated.
    public var captureLimitBytes: Int

    /// `/var/lib/atoll`, the host default.
    public static let defaultDataDirectory = "/var/lib/atoll"

    public init(
        dataDirectory: String = RuntimeConfiguration.defaultDataDirectory,
        snapshotsDirectory: String? = nil,
        cgroupName: String = "atoll",
        idRangeStart: UInt32 = 1 << 28,
        idRangeSlots: Int = 4096,
        limits: ResourceLimits = .defaults,
        pidsMax: Int = CgroupLimits.defaultPidsMax,
        captureLimitBytes: Int = 16 << 20
    ) {
        self.dataDirectory = dataDirectory
        self.snapshotsDirectory = snapshotsDirectory ?? "\(dataDirectory)/snapshots"
        self.cgroupName = cgroupName
        self.idRangeStart = idRangeStart
        self.idRangeSlots = idRangeSlots
        self.limits = limits
        self.pidsMax = pidsMax
        self.captureLimitBytes = captureLimitBytes
    }

    /// The defaults, with overrides from the environment (for operators and test harnesses):
    /// `ATOLL_SNAPSHOTS_DIR`, `ATOLL_CGROUP_NAME`, `ATOLL_ID_RANGE_START`, `ATOLL_PIDS_MAX`,
    /// `ATOLL_MAX_CPU`, `ATOLL_MAX_MEMORY_GIB`, `ATOLL_MAX_DISK_GIB`.
    public static func fromEnvironment(dataDirectory: String, _ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RuntimeConfiguration {
        func number<T: FixedWidthInteger>(_ key: String, _ fallback: T) throws -> T {
            guard let text = environment[key] else { return fallback }
            guard let value = T(text) else { throw AtollError(.invalidArgument, "\(key)=\(text) is not a valid number") }
            return value
        }
        var config = RuntimeConfiguration(dataDirectory: dataDirectory, snapshotsDirectory: environment["ATOLL_SNAPSHOTS_DIR"])
        if let name = environment["ATOLL_CGROUP_NAME"] {
            guard SandboxID.isValid(name) else { throw AtollError(.invalidArgument, "ATOLL_CGROUP_NAME=\(name) is not a valid name") }
            config.cgroupName = name
        }
        config.idRangeStart = try number("ATOLL_ID_RANGE_START", config.idRangeStart)
        config.pidsMax = try number("ATOLL_PIDS_MAX", config.pidsMax)
        config.limits = ResourceLimits(
            maxCPU: try number("ATOLL_MAX_CPU", config.limits.maxCPU),
            maxMemoryGiB: try number("ATOLL_MAX_MEMORY_GIB", config.limits.maxMemoryGiB),
            maxDiskGiB: try number("ATOLL_MAX_DISK_GIB", config.limits.maxDiskGiB)
        )
        return config
    }

    var sandboxesDirectory: String { "\(dataDirectory)/sandboxes" }
    var idRangesDirectory: String { "\(dataDirectory)/idranges" }
}
