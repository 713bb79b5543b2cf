/// `POST /api/snapshots`, Daytona's `CreateSnapshot`: a name and either an image or a build.
public struct CreateSnapshotRequest: Codable, Sendable {
    public var name: String
    public var imageName: String?
    public var entrypoint: [String]?
    public var cpu: Int?
    public var gpu: Int?
    public var memory: Int?
    public var disk: Int?
    public var buildInfo: CreateSandboxRequest.BuildInfo?
    public var regionId: String?

    public init(
        name: String, imageName: String? = nil, entrypoint: [String]? = nil, cpu: Int? = nil, memory: Int? = nil, disk: Int? = nil,
        buildInfo: CreateSandboxRequest.BuildInfo? = nil
    ) {
        self.name = name
        self.imageName = imageName
        self.entrypoint = entrypoint
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.buildInfo = buildInfo
    }
}

/// Daytona's `SnapshotDto` (create, get, activate, list items).
public struct SnapshotDTO: Codable, Sendable, Equatable {
    public var id: String
    public var organizationId: String?
    /// Whether every organization may use it (Atoll's shipped snapshots).
    public var general: Bool
    public var name: String
    public var imageName: String?
    public var state: String
    public var size: Double?
    public var entrypoint: [String]?
    public var cpu: Int
    public var gpu: Int
    public var mem: Int
    public var disk: Int
    public var errorReason: String?
    public var createdAt: String
    public var updatedAt: String
    public var lastUsedAt: String?
    public var ref: String?

    public init(
        id: String, organizationId: String?, general: Bool, name: String, imageName: String?, state: String, size: Double?,
        entrypoint: [String]?, cpu: Int, mem: Int, disk: Int, errorReason: String?, createdAt: String, updatedAt: String,
        lastUsedAt: String?, ref: String?
    ) {
        self.id = id
        self.organizationId = organizationId
        self.general = general
        self.name = name
        self.imageName = imageName
        self.state = state
        self.size = size
        self.entrypoint = entrypoint
        self.cpu = cpu
        gpu = 0
        self.mem = mem
        self.disk = disk
        self.errorReason = errorReason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastUsedAt = lastUsedAt
        self.ref = ref
    }
}

/// Daytona's `PaginatedSnapshots`.
public struct PaginatedSnapshots: Codable, Sendable {
    public var items: [SnapshotDTO]
    public var total: Int
    public var page: Int
    public var totalPages: Int

    public init(items: [SnapshotDTO], total: Int, page: Int, totalPages: Int) {
        self.items = items
        self.total = total
        self.page = page
        self.totalPages = totalPages
    }
}
