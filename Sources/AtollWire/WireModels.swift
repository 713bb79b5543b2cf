/// The JSON atolld speaks — Daytona's wire format — shared by the server (AtollAPI) and its
/// clients (the `atoll` CLI), so both sides use one definition of every body.

/// Daytona's `Sandbox` as the SDK's generated model reads it: camelCase keys, every required
/// field present and non-null with its strict type (integers for cpu/gpu/memory/disk, objects of
/// strings for env and labels, booleans), and always a `state`.
public struct SandboxDTO: Codable, Sendable, Hashable {
    public var id: String
    public var organizationId: String
    public var name: String
    public var snapshot: String?
    public var user: String
    public var env: [String: String]?
    public var labels: [String: String]
    public var `public`: Bool
    public var networkBlockAll: Bool
    public var networkAllowList: String?
    public var kvm: Bool?
    public var target: String
    public var cpu: Int
    public var gpu: Int
    public var memory: Int
    public var disk: Int
    public var state: String?
    public var desiredState: String?
    public var errorReason: String?
    public var recoverable: Bool?
    public var backupState: String?
    public var autoStopInterval: Int?
    public var autoArchiveInterval: Int?
    public var autoDeleteInterval: Int?
    public var autoPauseInterval: Int?
    /// When a TTL deletes the sandbox (ISO 8601), if one is set.
    public var autoDestroyAt: String?
    public var volumes: [String]?
    public var createdAt: String?
    public var updatedAt: String?
    public var lastActivityAt: String?
    public var runnerId: String?
    public var daemonVersion: String?
    public var toolboxProxyUrl: String

    public init(
        id: String, organizationId: String, name: String, snapshot: String?, user: String, env: [String: String]?,
        labels: [String: String], networkBlockAll: Bool, networkAllowList: String?, cpu: Int, memory: Int, disk: Int,
        state: String, desiredState: String?, errorReason: String?, recoverable: Bool?, autoStopInterval: Int?,
        autoArchiveInterval: Int?, autoDeleteInterval: Int?, createdAt: String?, updatedAt: String?,
        lastActivityAt: String?, daemonVersion: String?, toolboxProxyUrl: String
    ) {
        self.id = id
        self.organizationId = organizationId
        self.name = name
        self.snapshot = snapshot
        self.user = user
        self.env = env
        self.labels = labels
        self.public = false
        self.networkBlockAll = networkBlockAll
        self.networkAllowList = networkAllowList
        self.kvm = false
        self.target = "local"
        self.cpu = cpu
        self.gpu = 0
        self.memory = memory
        self.disk = disk
        self.state = state
        self.desiredState = desiredState
        self.errorReason = errorReason
        self.recoverable = recoverable
        self.backupState = "None"
        self.autoStopInterval = autoStopInterval
        self.autoArchiveInterval = autoArchiveInterval
        self.autoDeleteInterval = autoDeleteInterval
        self.volumes = []
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastActivityAt = lastActivityAt
        self.runnerId = "local"
        self.daemonVersion = daemonVersion
        self.toolboxProxyUrl = toolboxProxyUrl
    }
}

/// `POST /api/sandbox`, Daytona's `CreateSandbox`. Unknown keys are ignored (the SDK sends many
/// optional ones); known keys must have the right type.
public struct CreateSandboxRequest: Codable, Sendable {
    public struct BuildInfo: Codable, Sendable {
        public var dockerfileContent: String?
        public var contextHashes: [String]?

        public init(dockerfileContent: String?, contextHashes: [String]?) {
            self.dockerfileContent = dockerfileContent
            self.contextHashes = contextHashes
        }
    }

    public struct Volume: Codable, Sendable {
        public var volumeId: String
        public var mountPath: String
        public var subpath: String?
    }

    public var name: String?
    public var snapshot: String?
    public var user: String?
    public var env: [String: String]?
    public var labels: [String: String]?
    public var `public`: Bool?
    public var networkBlockAll: Bool?
    public var networkAllowList: String?
    /// Restrictions and features Atoll cannot honour: refused when set (never silently dropped).
    public var domainAllowList: String?
    public var outboundProxyUrl: String?
    public var ttlMinutes: Int?
    public var autoPauseInterval: Int?
    public var secrets: [CodableValue]?
    public var target: String?
    public var kvm: Bool?
    public var gpuType: String?
    public var cpu: Int?
    public var gpu: Int?
    public var memory: Int?
    public var disk: Int?
    public var autoStopInterval: Int?
    public var autoArchiveInterval: Int?
    public var autoDeleteInterval: Int?
    public var volumes: [Volume]?
    public var buildInfo: BuildInfo?

    public init(
        name: String? = nil, snapshot: String? = nil, user: String? = nil, env: [String: String]? = nil,
        labels: [String: String]? = nil, networkBlockAll: Bool? = nil, networkAllowList: String? = nil, cpu: Int? = nil,
        memory: Int? = nil, disk: Int? = nil, autoStopInterval: Int? = nil, autoArchiveInterval: Int? = nil,
        autoDeleteInterval: Int? = nil
    ) {
        self.name = name
        self.snapshot = snapshot
        self.user = user
        self.env = env
        self.labels = labels
        self.networkBlockAll = networkBlockAll
        self.networkAllowList = networkAllowList
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.autoStopInterval = autoStopInterval
        self.autoArchiveInterval = autoArchiveInterval
        self.autoDeleteInterval = autoDeleteInterval
    }
}

/// `GET /api/sandbox`: a page and the cursor of the next one.
public struct ListSandboxesResponse: Codable, Sendable {
    public var items: [SandboxDTO]
    public var nextCursor: String?

    public init(items: [SandboxDTO], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}

/// `GET /api/sandbox/paginated` (SDKs before 0.180).
public struct PaginatedSandboxes: Codable, Sendable {
    public var items: [SandboxDTO]
    public var total: Int
    public var page: Int
    public var totalPages: Int

    public init(items: [SandboxDTO], total: Int, page: Int, totalPages: Int) {
        self.items = items
        self.total = total
        self.page = page
        self.totalPages = totalPages
    }
}

public struct LabelsBody: Codable, Sendable {
    public var labels: [String: String]
    public init(labels: [String: String]) { self.labels = labels }
}

public struct ResizeBody: Codable, Sendable {
    public var cpu: Int?
    public var memory: Int?
    public var disk: Int?
    public var gpu: Int?
    public init(cpu: Int?, memory: Int?, disk: Int?) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
    }
}

/// `POST /api/sandbox/{id}/network-settings` (Daytona's `UpdateSandboxNetworkSettings`).
public struct NetworkSettingsBody: Codable, Sendable {
    public var networkBlockAll: Bool?
    public var networkAllowList: String?
    public var domainAllowList: String?
    public init(networkBlockAll: Bool? = nil, networkAllowList: String? = nil, domainAllowList: String? = nil) {
        self.networkBlockAll = networkBlockAll
        self.networkAllowList = networkAllowList
        self.domainAllowList = domainAllowList
    }
}

public struct URLBody: Codable, Sendable {
    public var url: String
    public init(url: String) { self.url = url }
}

/// `POST /toolbox/{id}/process/execute`.
public struct ExecuteBody: Codable, Sendable {
    public var command: String
    public var cwd: String?
    public var envs: [String: String]?
    public var timeout: Int?
    public init(command: String, cwd: String?, envs: [String: String]?, timeout: Int?) {
        self.command = command
        self.cwd = cwd
        self.envs = envs
        self.timeout = timeout
    }
}

public struct ExecuteResponse: Codable, Sendable {
    public var exitCode: Int32
    public var result: String
    public init(exitCode: Int32, result: String) {
        self.exitCode = exitCode
        self.result = result
    }
}

/// `POST /toolbox/{id}/process/code-run`.
public struct CodeRunBody: Codable, Sendable {
    public var code: String
    public var language: String?
    public var argv: [String]?
    public var envs: [String: String]?
    public var timeout: Int?
    public init(code: String, language: String?, argv: [String]?, envs: [String: String]?, timeout: Int?) {
        self.code = code
        self.language = language
        self.argv = argv
        self.envs = envs
        self.timeout = timeout
    }
}

public struct CodeRunResponse: Codable, Sendable {
    public struct Artifacts: Codable, Sendable {
        public var charts: [String]
        public init() { charts = [] }
    }
    public var exitCode: Int32
    public var result: String
    public var artifacts: Artifacts?
    public init(exitCode: Int32, result: String) {
        self.exitCode = exitCode
        self.result = result
        self.artifacts = Artifacts()
    }
}

/// The body of every error response.
public struct ErrorBody: Codable, Sendable {
    public var statusCode: Int
    public var message: String
    public var code: String?
    /// `DAYTONA_DAEMON` on toolbox routes (so the SDK maps daemon codes to its exceptions),
    /// `DAYTONA_API` elsewhere.
    public var source: String?
    public var error: String?
    public var timestamp: String?
    public var path: String?
    public var method: String?
    /// The messages one by one (Daytona's daemon sends them for a bulk upload).
    public var errors: [String]?

    public init(statusCode: Int, message: String, code: String, source: String, error: String, timestamp: String, path: String, method: String) {
        self.statusCode = statusCode
        self.message = message
        self.code = code
        self.source = source
        self.error = error
        self.timestamp = timestamp
        self.path = path
        self.method = method
    }
}

/// Any JSON value, decoded only to learn that it is there (a field Atoll refuses when it is set).
public enum CodableValue: Codable, Sendable {
    case present

    public init(from decoder: any Decoder) throws { self = .present }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encodeNil()
    }
}

/// The first message of Atoll's live exec WebSocket (`/toolbox/{id}/process/exec-stream`, see
/// docs/interactive.md): what to run (`argv`, a shell `command`, or `code` for `language`'s
/// interpreter with `arguments`), its environment, directory and timeout, and a terminal size
/// (`rows`, `cols`) for a process on a terminal. `user` is for the embedded CLI only; the API
/// refuses it (processes run as the sandbox's user).
public struct LiveExecRequest: Codable, Sendable {
    public var argv: [String]?
    public var command: String?
    public var code: String?
    public var language: String?
    public var arguments: [String]?
    public var env: [String: String]?
    public var cwd: String?
    public var user: String?
    public var timeout: Double?
    public var rows: Int?
    public var cols: Int?

    public init(
        argv: [String]? = nil, command: String? = nil, code: String? = nil, language: String? = nil, arguments: [String]? = nil,
        env: [String: String]? = nil, cwd: String? = nil, user: String? = nil, timeout: Double? = nil, rows: Int? = nil, cols: Int? = nil
    ) {
        self.argv = argv
        self.command = command
        self.code = code
        self.language = language
        self.arguments = arguments
        self.env = env
        self.cwd = cwd
        self.user = user
        self.timeout = timeout
        self.rows = rows
        self.cols = cols
    }
}
