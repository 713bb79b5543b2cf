public import AtollCore
import Foundation
public import GRDB

/// One sandbox as persisted: everything the runner needs to rebuild its view after a restart.
/// Times are seconds since 1970 (the runner's clock), so intervals compare with plain numbers.
public struct SandboxRow: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "sandbox"

    public var id: String
    public var organizationId: String
    public var name: String
    /// `SandboxState` wire name.
    public var state: String
    public var errorReason: String?
    public var recoverable: Bool
    public var snapshot: String
    public var user: String
    /// JSON object of strings.
    public var env: String
    /// JSON object of strings, exactly as given.
    public var labels: String
    public var cpu: Int
    public var memoryGiB: Int
    public var diskGiB: Int
    public var pidsMax: Int
    public var autoStop: Int
    public var autoArchive: Int
    public var autoDelete: Int
    public var networkBlockAll: Bool
    public var networkAllowList: String?
    /// Host id range the sandbox's ids map to (exclusive: UNIQUE).
    public var uidBase: Int64
    public var uidCount: Int64
    /// IPv4 address on the sandbox network (set by the network layer).
    public var address: String?
    /// PID 1 while started: pid and start time (clock ticks since boot) identify it across pid reuse.
    public var initPid: Int32?
    public var initStartTime: Int64?
    /// The archive while archived.
    public var archivePath: String?
    public var archiveBytes: Int64?
    public var archiveSHA256: String?
    /// The process a sandbox belongs to (`atoll run`); when it is gone, the sandbox is deleted.
    public var ownerPid: Int32?
    public var ownerStartTime: Int64?
    /// The process carrying out the current transition and a token for it: a restarted runner
    /// reconciles a transition only if that process is gone, and a late finisher whose token no
    /// longer matches (the transition timed out meanwhile) does not overwrite the outcome.
    public var opPid: Int32?
    public var opStartTime: Int64?
    public var opToken: String?
    /// When the current transitional state times out.
    public var deadline: Double?
    public var createdAt: Double
    public var updatedAt: Double
    public var lastActivityAt: Double
    /// The warm pool key (`WarmPoolKey.description`) of a pooled sandbox not yet claimed, or
    /// `claiming:TOKEN` while a claim is under way; nil for every sandbox someone asked for.
    public var pool: String? = nil
    /// Whether its preview URLs answer without a token (Daytona's `public`).
    public var isPublic: Bool = false
    /// Pause after this many minutes without activity; 0 = never.
    public var autoPause: Int = 0
    /// When the sandbox is deleted whatever its state (Daytona's TTL), seconds since 1970; nil = never.
    public var expiresAt: Double? = nil
    /// The key of its signed file URLs (Daytona's signing key), made on first use; rotating it
    /// ends every URL signed with the old one.
    public var signingKey: String? = nil
    /// What the driver mounts, when it is not the snapshot directory named `snapshot`: the id of a
    /// registered snapshot (its directory), so a snapshot renamed or re-created under the same
    /// name never changes a sandbox's root.
    public var snapshotRef: String? = nil

    public init(
        id: String, organizationId: String, name: String, state: String, errorReason: String?, recoverable: Bool, snapshot: String, user: String, env: String,
        labels: String, cpu: Int, memoryGiB: Int, diskGiB: Int, pidsMax: Int, autoStop: Int, autoArchive: Int, autoDelete: Int, networkBlockAll: Bool,
        networkAllowList: String?, uidBase: Int64, uidCount: Int64, address: String?, initPid: Int32?, initStartTime: Int64?, archivePath: String?,
        archiveBytes: Int64?, archiveSHA256: String?, ownerPid: Int32?, ownerStartTime: Int64?, opPid: Int32?, opStartTime: Int64?, opToken: String?,
        deadline: Double?, createdAt: Double, updatedAt: Double, lastActivityAt: Double
    ) {
        self.id = id
        self.organizationId = organizationId
        self.name = name
        self.state = state
        self.errorReason = errorReason
        self.recoverable = recoverable
        self.snapshot = snapshot
        self.user = user
        self.env = env
        self.labels = labels
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
        self.pidsMax = pidsMax
        self.autoStop = autoStop
        self.autoArchive = autoArchive
        self.autoDelete = autoDelete
        self.networkBlockAll = networkBlockAll
        self.networkAllowList = networkAllowList
        self.uidBase = uidBase
        self.uidCount = uidCount
        self.address = address
        self.initPid = initPid
        self.initStartTime = initStartTime
        self.archivePath = archivePath
        self.archiveBytes = archiveBytes
        self.archiveSHA256 = archiveSHA256
        self.ownerPid = ownerPid
        self.ownerStartTime = ownerStartTime
        self.opPid = opPid
        self.opStartTime = opStartTime
        self.opToken = opToken
        self.deadline = deadline
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastActivityAt = lastActivityAt
    }

    /// The state. Rows are checked when they are read (`checked()`), so an unknown state never
    /// reaches the runner; `.error` here is only a last resort for a row built in memory.
    public var sandboxState: SandboxState { SandboxState(rawValue: state) ?? .error }

    /// Whether and how the row belongs to a warm pool, as a type rather than a string.
    public var poolMembership: PoolMembership? {
        get {
            guard let pool else { return nil }
            if pool.hasPrefix(WarmPool.claimingPrefix) { return .claiming(token: String(pool.dropFirst(WarmPool.claimingPrefix.count))) }
            return .member(key: pool)
        }
        set {
            switch newValue {
            case nil: pool = nil
            case .member(let key): pool = key
            case .claiming(let token): pool = WarmPool.claimingPrefix + token
            }
        }
    }

    /// The row, if every column holds what Atoll writes; otherwise a loud error naming the
    /// sandbox and the column (a damaged database, or one written by a newer Atoll), never a
    /// silently different sandbox.
    public func checked() throws(AtollError) -> SandboxRow {
        func corrupt(_ what: String) -> AtollError {
            AtollError(
                .internal,
                "the database record of sandbox \"\(id.prefix(80))\" is damaged: \(what); Atoll leaves it untouched (move the database away or delete the record)"
            )
        }
        guard SandboxID.isValid(id) else { throw corrupt("the id is not a sandbox id") }
        guard SandboxState(rawValue: state) != nil else { throw corrupt("state \"\(state.prefix(32))\" is not a state Atoll knows") }
        guard cpu > 0, memoryGiB > 0, diskGiB > 0, pidsMax > 0 else {
            throw corrupt("resources \(cpu) vCPU / \(memoryGiB) GiB / \(diskGiB) GiB, \(pidsMax) tasks are not positive")
        }
        guard uidBase >= 0, uidBase <= Int64(UInt32.max), uidCount >= 0, uidCount <= Int64(UInt32.max) else {
            throw corrupt("the id range \(uidBase)+\(uidCount) is out of range")
        }
        if let text = networkAllowList {
            do {
                _ = try NetworkPolicy.parseAllowList(text)
            } catch {
                throw corrupt("the network allow list: \(error.message)")
            }
        }
        return self
    }
}

/// A warm pool member's standing.
public enum PoolMembership: Sendable, Hashable {
    /// Ready (or being built) for creates matching the key (`WarmPoolKey.description`).
    case member(key: String)
    /// Taken by a claim that is under way, identified by its token.
    case claiming(token: String)
}

/// One entry of a sandbox's state history.
public struct TransitionRow: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "transition"
    public var id: Int64?
    public var sandboxId: String
    public var at: Double
    public var fromState: String?
    public var toState: String
    public var reason: String?

    public init(sandboxId: String, at: Double, fromState: String?, toState: String, reason: String?) {
        self.sandboxId = sandboxId
        self.at = at
        self.fromState = fromState
        self.toState = toState
        self.reason = reason
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// JSON for the string maps stored in a column (keys sorted, so equal maps store equal text).
public enum StringMapColumn {
    public static func encode(_ map: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(map)) ?? Data("{}".utf8), as: UTF8.self)
    }

    public static func decode(_ text: String) -> [String: String] {
        (try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))) ?? [:]
    }
}
