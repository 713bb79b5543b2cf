import AtollCore
import AtollRuntime
import Foundation

/// Daytona's `Sandbox` as the SDK's generated model reads it: camelCase keys, every required
/// field present and non-null with its strict type (integers for cpu/gpu/memory/disk, objects of
/// strings for env and labels, booleans), and always a `state`.
struct SandboxDTO: Codable, Sendable {
    var id: String
    var organizationId: String
    var name: String
    var snapshot: String?
    var user: String
    var env: [String: String]
    var labels: [String: String]
    var `public`: Bool
    var networkBlockAll: Bool
    var networkAllowList: String?
    var kvm: Bool
    var target: String
    var cpu: Int
    var gpu: Int
    var memory: Int
    var disk: Int
    var state: String
    var desiredState: String?
    var errorReason: String?
    var recoverable: Bool?
    var backupState: String?
    var autoStopInterval: Int?
    var autoArchiveInterval: Int?
    var autoDeleteInterval: Int?
    var volumes: [String]?
    var createdAt: String?
    var updatedAt: String?
    var lastActivityAt: String?
    var runnerId: String?
    var daemonVersion: String?
    var toolboxProxyUrl: String

    // ISO8601DateFormatter is thread-safe once configured.
    nonisolated(unsafe) static let iso: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    init(_ s: Sandbox, toolboxURL: String) {
        id = s.id.rawValue
        organizationId = s.organizationId
        name = s.name
        snapshot = s.snapshot.isEmpty ? nil : s.snapshot
        user = s.user
        env = s.env
        labels = s.labels
        `public` = false
        networkBlockAll = s.network.blockAll
        networkAllowList = s.network.allowListText
        kvm = false
        target = "local"
        cpu = s.resources.cpu
        gpu = 0
        memory = s.resources.memoryGiB
        disk = s.resources.diskGiB
        state = s.state.rawValue
        desiredState = Self.desiredState(s.state)
        errorReason = s.errorReason
        recoverable = s.state == .error ? s.recoverable : nil
        backupState = "None"
        autoStopInterval = s.intervals.autoStop
        autoArchiveInterval = s.intervals.autoArchive
        autoDeleteInterval = s.intervals.autoDelete
        volumes = []
        createdAt = Self.iso.string(from: s.createdAt)
        updatedAt = Self.iso.string(from: s.updatedAt)
        lastActivityAt = Self.iso.string(from: s.lastActivityAt)
        runnerId = "local"
        daemonVersion = AtollAPIVersion.current
        toolboxProxyUrl = toolboxURL
    }

    /// Where a sandbox is headed (Daytona's `desiredState`).
    static func desiredState(_ state: SandboxState) -> String? {
        switch state {
        case .creating, .starting, .started, .restoring, .pendingBuild: return "started"
        case .stopping, .stopped: return "stopped"
        case .archiving, .archived: return "archived"
        case .resizing: return "resized"
        case .destroying, .destroyed: return "destroyed"
        case .error, .buildFailed: return nil
        }
    }
}

/// The version atolld reports.
public enum AtollAPIVersion {
    public static let current = "0.1.0-dev"
}

/// `POST /api/sandbox`, Daytona's `CreateSandbox`. Unknown keys are ignored (the SDK sends many
/// optional ones); known keys must have the right type.
struct CreateSandboxRequest: Decodable {
    struct BuildInfo: Decodable {
        var dockerfileContent: String?
        var contextHashes: [String]?
    }

    struct Volume: Decodable {
        var volumeId: String
        var mountPath: String
        var subpath: String?
    }

    var name: String?
    var snapshot: String?
    var user: String?
    var env: [String: String]?
    var labels: [String: String]?
    var `public`: Bool?
    var networkBlockAll: Bool?
    var networkAllowList: String?
    var target: String?
    var cpu: Int?
    var gpu: Int?
    var memory: Int?
    var disk: Int?
    var autoStopInterval: Int?
    var autoArchiveInterval: Int?
    var autoDeleteInterval: Int?
    var volumes: [Volume]?
    var buildInfo: BuildInfo?
}

/// `GET /api/sandbox`: a page and the cursor of the next one.
struct ListSandboxesResponse: Encodable {
    var items: [SandboxDTO]
    var nextCursor: String?
}

/// `GET /api/sandbox/paginated` (SDKs before 0.180).
struct PaginatedSandboxes: Encodable {
    var items: [SandboxDTO]
    var total: Int
    var page: Int
    var totalPages: Int
}

struct LabelsBody: Codable {
    var labels: [String: String]
}

struct ResizeBody: Decodable {
    var cpu: Int?
    var memory: Int?
    var disk: Int?
    var gpu: Int?
}

struct URLBody: Encodable {
    var url: String
}
