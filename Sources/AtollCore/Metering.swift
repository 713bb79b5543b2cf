/// What a sandbox holds while it sits in a state, for billing: Daytona charges started sandboxes
/// for CPU, memory and disk, stopped ones for disk, archived ones for their archive.
public enum Allocation: Sendable, Hashable, Codable {
    case compute(cpu: Int, memoryGiB: Int, diskGiB: Int)
    case disk(diskGiB: Int)
    case archive(bytes: Int64)

    /// `compute`, `disk` or `archive` (the stored and wire name).
    public var kind: String {
        switch self {
        case .compute: return "compute"
        case .disk: return "disk"
        case .archive: return "archive"
        }
    }

    public var cpu: Int { if case .compute(let cpu, _, _) = self { return cpu } else { return 0 } }
    public var memoryGiB: Int { if case .compute(_, let memory, _) = self { return memory } else { return 0 } }
    public var diskGiB: Int {
        switch self {
        case .compute(_, _, let disk), .disk(let disk): return disk
        case .archive: return 0
        }
    }
    public var archiveBytes: Int64 { if case .archive(let bytes) = self { return bytes } else { return 0 } }

    /// Rebuilds an allocation from its stored form.
    public init?(kind: String, cpu: Int, memoryGiB: Int, diskGiB: Int, archiveBytes: Int64) {
        switch kind {
        case "compute": self = .compute(cpu: cpu, memoryGiB: memoryGiB, diskGiB: diskGiB)
        case "disk": self = .disk(diskGiB: diskGiB)
        case "archive": self = .archive(bytes: archiveBytes)
        default: return nil
        }
    }
}

/// What a state change does to a sandbox's allocation period.
public enum AllocationRule: Sendable, Hashable {
    /// A transition is under way: the period of the state it left stays open until it ends.
    case keep
    /// Nothing is allocated (error, a failed build, deleted): the open period closes.
    case none
    /// This is allocated from now on: a period with a different allocation closes, this one opens.
    case allocate(Allocation)

    /// The rule for a sandbox now in `state` with these resources.
    public static func forState(_ state: SandboxState, cpu: Int, memoryGiB: Int, diskGiB: Int, archiveBytes: Int64?) -> AllocationRule {
        switch state {
        case .started: return .allocate(.compute(cpu: cpu, memoryGiB: memoryGiB, diskGiB: diskGiB))
        case .stopped: return .allocate(.disk(diskGiB: diskGiB))
        // Frozen: memory and disk stay held, no CPU (Daytona bills a paused sandbox as stopped for CPU).
        case .paused: return .allocate(.compute(cpu: 0, memoryGiB: memoryGiB, diskGiB: diskGiB))
        case .archived: return .allocate(.archive(bytes: archiveBytes ?? 0))
        case .starting, .stopping, .archiving, .restoring, .resizing, .destroying, .pausing, .resuming: return .keep
        // Nothing is allocated before the first start, nor in error or after a failed build.
        case .creating, .error, .buildFailed, .pendingBuild, .destroyed: return .none
        }
    }
}

/// Prices per unit, for `estimatedCost` (defaults: Daytona's list prices for vCPU, memory and
/// disk; an object-storage class price for archives).
public struct PriceTable: Sendable, Hashable, Codable {
    public var vcpuSecond: Double
    public var memoryGiBSecond: Double
    public var diskGiBSecond: Double
    public var archiveGiBMonth: Double
    public var currency: String

    public init(
        vcpuSecond: Double = 0.000014, memoryGiBSecond: Double = 0.0000045, diskGiBSecond: Double = 0.00000003,
        archiveGiBMonth: Double = 0.02, currency: String = "USD"
    ) {
        self.vcpuSecond = vcpuSecond
        self.memoryGiBSecond = memoryGiBSecond
        self.diskGiBSecond = diskGiBSecond
        self.archiveGiBMonth = archiveGiBMonth
        self.currency = currency
    }

    public static let defaults = PriceTable()

    /// Seconds in the month the archive price refers to (30 days).
    public static let secondsPerMonth = 30.0 * 86400

    public func cost(vcpuSeconds: Double, memoryGiBSeconds: Double, diskGiBSeconds: Double, archiveGiBSeconds: Double) -> Double {
        vcpuSeconds * vcpuSecond + memoryGiBSeconds * memoryGiBSecond + diskGiBSeconds * diskGiBSecond
            + archiveGiBSeconds / Self.secondsPerMonth * archiveGiBMonth
    }

    /// Checks every price is a finite, non-negative number.
    public func validate() throws(AtollError) {
        for (name, value) in [
            ("vcpuSecond", vcpuSecond), ("memoryGiBSecond", memoryGiBSecond), ("diskGiBSecond", diskGiBSecond),
            ("archiveGiBMonth", archiveGiBMonth),
        ] where !(value.isFinite && value >= 0) {
            throw AtollError(.invalidArgument, "price \(name) must be a non-negative number, got \(value)")
        }
    }
}

/// The UTC day boundaries periods roll over at (a period never spans midnight).
public enum UTCDay {
    /// The start of the UTC day holding `time` (seconds since 1970).
    public static func start(of time: Double) -> Double { (time / 86400).rounded(.down) * 86400 }
}
