public import AtollCore
public import AtollLinux
import AtollStore
public import Foundation

/// A sandbox as the runner reports it.
public struct Sandbox: Sendable, Hashable {
    public var id: SandboxID
    public var organizationId: String
    public var name: String
    public var state: SandboxState
    /// Why the sandbox is in `error` (or why the last transition ended as it did).
    public var errorReason: String?
    /// Whether `recover` can bring it back from `error`.
    public var recoverable: Bool
    public var snapshot: String
    public var user: String
    public var env: [String: String]
    /// Exactly as given.
    public var labels: [String: String]
    public var resources: Resources
    public var pidsMax: Int
    public var intervals: LifecycleIntervals
    public var network: NetworkPolicy
    /// Host ids the sandbox's ids map to.
    public var ids: IDRange
    public var address: String?
    /// Host pid of PID 1 while started.
    public var initPid: Int32?
    /// Size of the archive while archived.
    public var archiveBytes: UInt64?
    public var createdAt: Date
    public var updatedAt: Date
    public var lastActivityAt: Date
    /// Whether its preview URLs answer without a token.
    public var isPublic: Bool
    /// Minutes without activity before it is paused; 0 = never.
    public var autoPause: Int
    /// When it is deleted whatever its state (a TTL); nil = never.
    public var expiresAt: Date?

    /// The code-execution language (the `code-toolbox-language` label; Python when absent).
    public var language: Language { labels[Language.labelKey].flatMap { Language(rawValue: $0) } ?? .default }

    init(_ row: SandboxRow, lastActivity: Double? = nil) {
        // Rows are checked when read (`SandboxRow.checked`): the id is valid here.
        id = try! SandboxID(row.id)
        organizationId = row.organizationId
        name = row.name
        state = row.sandboxState
        errorReason = row.errorReason
        recoverable = row.recoverable
        snapshot = row.snapshot
        user = row.user
        env = StringMapColumn.decode(row.env)
        labels = StringMapColumn.decode(row.labels)
        resources = row.resources
        pidsMax = row.pidsMax
        intervals = row.intervals
        network = row.networkPolicy
        ids = row.ids
        address = row.address
        initPid = row.initPid
        archiveBytes = row.archiveBytes.map { UInt64($0) }
        createdAt = Date(timeIntervalSince1970: row.createdAt)
        updatedAt = Date(timeIntervalSince1970: row.updatedAt)
        lastActivityAt = Date(timeIntervalSince1970: max(row.lastActivityAt, lastActivity ?? 0))
        isPublic = row.isPublic
        autoPause = row.autoPause
        expiresAt = row.expiresAt.map { Date(timeIntervalSince1970: $0) }
    }
}

/// What a new sandbox should be. Everything has Daytona's default.
public struct CreateParameters: Sendable {
    /// Unique within the organization; defaults to the id.
    public var name: String?
    public var labels: [String: String]
    public var env: [String: String]
    /// Stored in the `code-toolbox-language` label (as the Daytona SDK does); Python by default.
    public var language: Language?
    /// Default user of execs; `sandbox` by default.
    public var user: String?
    public var resources: Resources?
    public var snapshot: String?
    public var intervals: LifecycleIntervals
    /// Deleted as soon as it stops (the same as auto-delete 0).
    public var ephemeral: Bool
    public var network: NetworkPolicy
    public var pidsMax: Int?
    public var organizationId: String?
    /// Tie the sandbox to the calling process: once that process is gone, the runner deletes it
    /// (how `atoll run` cleans up after kill -9).
    public var ownedByCurrentProcess: Bool
    /// A chosen id (tests); random otherwise.
    public var id: SandboxID?
    /// Preview URLs answer without a token (Daytona's `public`).
    public var isPublic = false
    /// Minutes without activity before it is paused; 0 = never.
    public var autoPause = 0
    /// Minutes from creation until it is deleted whatever its state; 0 = never.
    public var ttlMinutes = 0

    public init(
        name: String? = nil, labels: [String: String] = [:], env: [String: String] = [:], language: Language? = nil,
        user: String? = nil, resources: Resources? = nil, snapshot: String? = nil, intervals: LifecycleIntervals = .defaults,
        ephemeral: Bool = false, network: NetworkPolicy = .open, pidsMax: Int? = nil, organizationId: String? = nil,
        ownedByCurrentProcess: Bool = false, id: SandboxID? = nil
    ) {
        self.name = name
        self.labels = labels
        self.env = env
        self.language = language
        self.user = user
        self.resources = resources
        self.snapshot = snapshot
        self.intervals = intervals
        self.ephemeral = ephemeral
        self.network = network
        self.pidsMax = pidsMax
        self.organizationId = organizationId
        self.ownedByCurrentProcess = ownedByCurrentProcess
        self.id = id
    }
}
