public import AtollCore
import Foundation

/// The cgroup hierarchy flavour a host runs.
public enum CgroupVersion: String, Sendable, Codable {
    /// The unified hierarchy (production hosts: Debian 12, Ubuntu 22.04+, RHEL 9).
    case v2
    /// One hierarchy per controller (legacy or hybrid hosts).
    case v1
}

/// Limits applied to a sandbox's cgroup.
public struct CgroupLimits: Sendable, Hashable, Codable {
    /// CPU quota in thousandths of a CPU (1000 = one full CPU).
    public var cpuMillis: Int
    /// Memory limit in bytes; swap is always off.
    public var memoryBytes: UInt64
    /// Maximum number of tasks (processes and threads).
    public var pidsMax: Int

    public init(cpuMillis: Int, memoryBytes: UInt64, pidsMax: Int) {
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.pidsMax = pidsMax
    }

    /// The CFS period both backends use: 100 ms, as runc and systemd default to.
    public static let cpuPeriodMicros = 100_000

    /// The quota for one period in microseconds.
    public var cpuQuotaMicros: Int { max(1000, cpuMillis * Self.cpuPeriodMicros / 1000) }

    /// Default task limit per sandbox: generous for builds, small enough to stop a fork bomb —
    /// a sixteenth of the host's pid_max, between 512 and 4096 (2048 on a host with 32768).
    public static let defaultPidsMax = min(4096, max(512, HostTasks.pidMax / 16))

    /// Limits for Daytona-style resources.
    public init(_ resources: Resources, pidsMax: Int = CgroupLimits.defaultPidsMax) {
        self.init(cpuMillis: resources.cpu * 1000, memoryBytes: UInt64(resources.memoryGiB) << 30, pidsMax: pidsMax)
    }
}

/// What a cgroup has used so far.
public struct CgroupUsage: Sendable, Hashable, Codable {
    /// CPU time consumed by all tasks, in nanoseconds.
    public var cpuNanoseconds: UInt64
    /// Memory charged now (anonymous, page cache, kernel), in bytes.
    public var memoryBytes: UInt64
    /// Highest memory charge seen, in bytes.
    public var memoryPeakBytes: UInt64
    /// Processes killed by the OOM killer inside this group.
    public var oomKills: UInt64
    /// Tasks now in the group.
    public var pids: Int
    /// Times a fork failed because the group was at its task limit (`pids.events` "max").
    public var pidsLimitHits: UInt64

    public init(
        cpuNanoseconds: UInt64 = 0, memoryBytes: UInt64 = 0, memoryPeakBytes: UInt64 = 0, oomKills: UInt64 = 0, pids: Int = 0,
        pidsLimitHits: UInt64 = 0
    ) {
        self.cpuNanoseconds = cpuNanoseconds
        self.memoryBytes = memoryBytes
        self.memoryPeakBytes = memoryPeakBytes
        self.oomKills = oomKills
        self.pids = pids
        self.pidsLimitHits = pidsLimitHits
    }
}

/// Open handles that place a new process into a cgroup before it runs anything: a directory for
/// `CLONE_INTO_CGROUP` (v2) or `cgroup.procs` files the child writes "0" to (v1).
public struct CgroupPlacement: Sendable {
    public var directory: OwnedFD?
    public var procsFiles: [OwnedFD]

    public init(directory: OwnedFD?, procsFiles: [OwnedFD]) {
        self.directory = directory
        self.procsFiles = procsFiles
    }
}

/// One interface over the v1 and v2 cgroup backends. Every group lives under the manager's own
/// top-level name (`groupName`), never under a group Atoll did not create.
public protocol CgroupManaging: Sendable {
    var version: CgroupVersion { get }
    /// The top-level group name under each hierarchy root, e.g. `atoll`.
    var groupName: String { get }

    /// Creates the group `name` (and the top-level group if needed) with `limits`.
    func create(_ name: String, limits: CgroupLimits) throws
    /// Changes the limits of a live group (takes effect immediately).
    func update(_ name: String, limits: CgroupLimits) throws
    /// Handles to place a new process into the group.
    func placement(_ name: String) throws -> CgroupPlacement
    func usage(_ name: String) throws -> CgroupUsage
    /// Just the OOM kill counter (one file read: execs check it before and after).
    func oomKills(_ name: String) throws -> UInt64
    /// Host pids of the processes in the group.
    func processes(_ name: String) throws -> [Int32]
    /// Freezes every task; returns once the kernel reports the group frozen.
    func freeze(_ name: String) throws
    func thaw(_ name: String) throws
    /// Kills every task (freeze, SIGKILL, thaw) and waits until the group is empty.
    func killAll(_ name: String) throws
    /// Removes the (empty) group; absent groups are fine.
    func remove(_ name: String) throws
    /// Caps the tasks of all sandboxes together (the top-level group's own task limit), so that
    /// however many sandboxes run a fork bomb, the host keeps pids of its own.
    func limitTopLevelTasks(_ max: Int) throws
    /// Removes the top-level group if it holds no groups any more.
    func removeTopLevelIfEmpty()
    func exists(_ name: String) -> Bool
    /// Names of the groups under the top-level group (to find ones no sandbox owns).
    func childGroups() -> [String]
    /// Every directory the group occupies (for leftover checks).
    func directories(_ name: String) -> [String]
}

/// Validation of cgroup names (a sandbox id is always valid).
enum CgroupName {
    static func check(_ name: String) throws {
        guard !name.isEmpty, name.count <= 200, !name.contains("/"), name != ".", name != ".." else {
            throw AtollError(.invalidArgument, "invalid cgroup name \"\(name)\"")
        }
    }
}

/// The host's task limit and the share sandboxes get of it.
public enum HostTasks {
    /// /proc/sys/kernel/pid_max (32768 if it cannot be read).
    public static let pidMax: Int = {
        guard let text = try? KernelFile.read("/proc/sys/kernel/pid_max"), let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return 32768
        }
        return value
    }()

    /// Tasks all sandboxes together may have: three quarters of pid_max; the host keeps the rest.
    public static let sandboxBudget = pidMax / 4 * 3
}
