public import AtollCore
public import AtollImage
public import AtollLinux
public import AtollSandbox
public import Foundation

/// How long each transitional state may last before the runner declares it stuck and moves the
/// sandbox to `error`.
public struct TransitionDeadlines: Sendable, Hashable {
    public var creating: Double = 300
    public var starting: Double = 120
    public var stopping: Double = 120
    public var archiving: Double = 3600
    public var restoring: Double = 3600
    public var resizing: Double = 600
    public var destroying: Double = 300

    public init() {}

    public static let defaults = TransitionDeadlines()

    public func seconds(for state: SandboxState) -> Double {
        switch state {
        case .creating, .pendingBuild: return creating
        case .starting: return starting
        case .stopping, .pausing, .resuming: return stopping
        case .archiving: return archiving
        case .restoring: return restoring
        case .resizing: return resizing
        case .destroying: return destroying
        default: return 0
        }
    }
}

/// The meter: how often it samples, how long per-second detail and rollups are kept, and the
/// prices `estimatedCost` uses.
public struct MeteringConfiguration: Sendable, Hashable {
    /// Seconds between two samples of every started sandbox.
    public var interval: Double = 1
    /// Per-second samples are kept this long, then folded into per-minute rows.
    public var detailSeconds: Double = 3600
    /// Per-minute rows and closed periods are kept this long.
    public var retentionDays: Double = 90
    public var prices: PriceTable = .defaults

    public init() {}
}

/// Settings of the runner. The defaults are a production host's; test harnesses point every
/// location at their own directory, cgroup name and id region, and pass a manual clock.
public struct RuntimeConfiguration: Sendable {
    public var driver: DriverConfiguration
    /// The SQLite database (`<data>/atoll.db`).
    public var databasePath: String
    /// Organization new sandboxes belong to when the caller names none.
    public var organizationId: String
    /// First host uid/gid handed to sandboxes and how many 65536-id slots follow it.
    public var idRangeStart: UInt32
    public var idRangeSlots: Int
    /// Per-sandbox maximum resources.
    public var limits: ResourceLimits
    /// Task limit per sandbox.
    public var pidsMax: Int
    public var deadlines: TransitionDeadlines
    /// How often the sweeper applies auto-stop, auto-archive, auto-delete and deadlines.
    public var sweepInterval: Double
    /// How often a sandbox's in-memory activity time is written to the database (a crash loses
    /// at most this much activity, never a state).
    public var activityFlushInterval: Double
    public var metering = MeteringConfiguration()
    /// Warm pools: ready sandboxes per key that a matching create claims instead of building one.
    /// Kept filled only by a runner that runs `WarmPoolService` (the daemon) or `startWarmPool()`; any runner claims.
    public var warmPool: WarmPoolConfiguration
    /// Toolbox operations (execs, file operations, transfers) one organization runs at once; more
    /// wait their turn (see `ConcurrencyGate`).
    public var toolboxConcurrency = 16
    /// What the host gives its sandboxes in all, and one organization at most (see `Admission`).
    public var capacity = HostCapacity.defaults
    public var quota = OrganizationQuota.unlimited

    /// Ready sandboxes of the default key kept by default.
    public static let defaultWarmPoolSize = 2

    /// `/var/lib/atoll`, the host default.
    public static let defaultDataDirectory = "/var/lib/atoll"

    public init(
        dataDirectory: String = RuntimeConfiguration.defaultDataDirectory, snapshotsDirectory: String? = nil,
        cgroupName: String = "atoll", organizationId: String = "default", idRangeStart: UInt32 = 1 << 28,
        idRangeSlots: Int = 4096, limits: ResourceLimits = .defaults, pidsMax: Int = CgroupLimits.defaultPidsMax,
        deadlines: TransitionDeadlines = .defaults, sweepInterval: Double = 10, activityFlushInterval: Double = 30,
        network: NetworkSettings? = .standard
    ) {
        self.driver = DriverConfiguration(
            dataDirectory: dataDirectory, snapshotsDirectory: snapshotsDirectory, cgroupName: cgroupName,
            network: network)
        self.databasePath = "\(dataDirectory)/atoll.db"
        self.organizationId = organizationId
        self.idRangeStart = idRangeStart
        self.idRangeSlots = idRangeSlots
        self.limits = limits
        self.pidsMax = pidsMax
        self.deadlines = deadlines
        self.sweepInterval = sweepInterval
        self.activityFlushInterval = activityFlushInterval
        self.warmPool = .defaultKey(size: Self.defaultWarmPoolSize, pidsMax: pidsMax)
    }

    public var dataDirectory: String { driver.dataDirectory }

    /// The image store (`blobs/`, `layers/`, `images/`).
    public var imagesDirectory: String { "\(dataDirectory)/images" }

    /// Registry mirrors and plain-HTTP registries for pulls (Docker's daemon.json settings).
    public var registry = RegistrySettings()

    /// The defaults, with overrides from the environment (for operators and test harnesses):
    /// `ATOLL_SNAPSHOTS_DIR`, `ATOLL_CGROUP_NAME`, `ATOLL_ID_RANGE_START`, `ATOLL_PIDS_MAX`,
    /// `ATOLL_MAX_CPU`, `ATOLL_MAX_MEMORY_GIB`, `ATOLL_MAX_DISK_GIB`, and for networking
    /// `ATOLL_NETWORK` (`bridge`, the default, or `none` for loopback only), `ATOLL_BRIDGE`,
    /// `ATOLL_SUBNET` and `ATOLL_NETNS` (a network namespace to use as the host, by path), and for
    /// metering `ATOLL_USAGE_DETAIL_SECONDS`, `ATOLL_USAGE_RETENTION_DAYS` and the prices
    /// `ATOLL_PRICE_VCPU_SECOND`, `ATOLL_PRICE_MEMORY_GIB_SECOND`, `ATOLL_PRICE_DISK_GIB_SECOND`,
    /// `ATOLL_PRICE_ARCHIVE_GIB_MONTH`, `ATOLL_PRICE_CURRENCY`, and `ATOLL_WARM_POOL` (see
    /// `WarmPoolConfiguration.parse`), and for pulls `ATOLL_REGISTRY_MIRRORS` (Docker Hub mirrors,
    /// URLs, comma-separated) and `ATOLL_INSECURE_REGISTRIES` (host:port reached over plain HTTP).
    public static func fromEnvironment(
        dataDirectory: String, _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RuntimeConfiguration {
        func number<T: FixedWidthInteger>(_ key: String, _ fallback: T) throws -> T {
            guard let text = environment[key] else { return fallback }
            guard let value = T(text) else { throw AtollError(.invalidArgument, "\(key)=\(text) is not a valid number") }
            return value
        }
        var config = RuntimeConfiguration(dataDirectory: dataDirectory, snapshotsDirectory: environment["ATOLL_SNAPSHOTS_DIR"])
        if let name = environment["ATOLL_CGROUP_NAME"] {
            guard SandboxID.isValid(name) else { throw AtollError(.invalidArgument, "ATOLL_CGROUP_NAME=\(name) is not a valid name") }
            config.driver.cgroupName = name
        }
        config.idRangeStart = try number("ATOLL_ID_RANGE_START", config.idRangeStart)
        config.pidsMax = try number("ATOLL_PIDS_MAX", config.pidsMax)
        config.toolboxConcurrency = try number("ATOLL_TOOLBOX_CONCURRENCY", config.toolboxConcurrency)
        func ratio(_ key: String, _ fallback: Double) throws -> Double {
            guard let text = environment[key] else { return fallback }
            guard let value = Double(text), value.isFinite, value >= 0 else {
                throw AtollError(.invalidArgument, "\(key)=\(text.prefix(32)) is not a non-negative number (0 turns the limit off)")
            }
            return value
        }
        config.capacity = HostCapacity(
            cpuOvercommit: try ratio("ATOLL_CPU_OVERCOMMIT", config.capacity.cpuOvercommit),
            memoryOvercommit: try ratio("ATOLL_MEMORY_OVERCOMMIT", config.capacity.memoryOvercommit),
            diskOvercommit: try ratio("ATOLL_DISK_OVERCOMMIT", config.capacity.diskOvercommit))
        config.quota = OrganizationQuota(
            maxCPU: try number("ATOLL_ORG_MAX_CPU", 0), maxMemoryGiB: try number("ATOLL_ORG_MAX_MEMORY_GIB", 0),
            maxDiskGiB: try number("ATOLL_ORG_MAX_DISK_GIB", 0), maxSandboxes: try number("ATOLL_ORG_MAX_SANDBOXES", 0))
        guard config.toolboxConcurrency >= 1 else { throw AtollError(.invalidArgument, "ATOLL_TOOLBOX_CONCURRENCY must be at least 1") }
        config.limits = ResourceLimits(
            maxCPU: try number("ATOLL_MAX_CPU", config.limits.maxCPU),
            maxMemoryGiB: try number("ATOLL_MAX_MEMORY_GIB", config.limits.maxMemoryGiB),
            maxDiskGiB: try number("ATOLL_MAX_DISK_GIB", config.limits.maxDiskGiB)
        )
        config.warmPool = try WarmPoolConfiguration.parse(
            environment["ATOLL_WARM_POOL"] ?? "\(defaultWarmPoolSize)",
            pidsMax: config.pidsMax, limits: config.limits)
        func decimal(_ key: String, _ fallback: Double) throws -> Double {
            guard let text = environment[key] else { return fallback }
            guard let value = Double(text), value.isFinite, value >= 0 else {
                throw AtollError(.invalidArgument, "\(key)=\(text.prefix(32)) is not a non-negative number")
            }
            return value
        }
        config.metering.detailSeconds = try decimal("ATOLL_USAGE_DETAIL_SECONDS", config.metering.detailSeconds)
        config.metering.retentionDays = try decimal("ATOLL_USAGE_RETENTION_DAYS", config.metering.retentionDays)
        config.metering.prices.vcpuSecond = try decimal("ATOLL_PRICE_VCPU_SECOND", config.metering.prices.vcpuSecond)
        config.metering.prices.memoryGiBSecond = try decimal("ATOLL_PRICE_MEMORY_GIB_SECOND", config.metering.prices.memoryGiBSecond)
        config.metering.prices.diskGiBSecond = try decimal("ATOLL_PRICE_DISK_GIB_SECOND", config.metering.prices.diskGiBSecond)
        config.metering.prices.archiveGiBMonth = try decimal("ATOLL_PRICE_ARCHIVE_GIB_MONTH", config.metering.prices.archiveGiBMonth)
        if let currency = environment["ATOLL_PRICE_CURRENCY"] {
            guard (1...8).contains(currency.count), currency.allSatisfy({ $0.isLetter }) else {
                throw AtollError(.invalidArgument, "ATOLL_PRICE_CURRENCY=\(currency.prefix(16)) is not a currency code such as USD")
            }
            config.metering.prices.currency = currency
        }
        func list(_ key: String) -> [String] {
            (environment[key] ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        config.registry = RegistrySettings(mirrors: list("ATOLL_REGISTRY_MIRRORS"), insecureRegistries: list("ATOLL_INSECURE_REGISTRIES"))
        _ = try config.registry.registriesConf()
        switch environment["ATOLL_NETWORK"] ?? "bridge" {
        case "none":
            config.driver.network = nil
        case "bridge":
            let subnet = try SandboxSubnet(parsing: environment["ATOLL_SUBNET"] ?? NetworkSettings.defaultSubnet)
            config.driver.network = try NetworkSettings(
                bridge: environment["ATOLL_BRIDGE"] ?? NetworkSettings.defaultBridge, subnet: subnet,
                namespacePath: environment["ATOLL_NETNS"].flatMap { $0.isEmpty ? nil : $0 })
        case let other:
            throw AtollError(.invalidArgument, "ATOLL_NETWORK=\(other.prefix(32)) is not a network mode: use bridge or none")
        }
        return config
    }
}
