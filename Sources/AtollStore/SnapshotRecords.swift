public import AtollCore
import Foundation
public import GRDB

/// A registered snapshot (Daytona's Snapshot): a named root for sandboxes, made from an image.
/// Names are unique within an organization; the id names its directory under the snapshots
/// directory once it is active.
public struct SnapshotRecord: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "snapshot"

    public var id: String
    public var organizationId: String
    public var name: String
    /// Daytona's snapshot state wire name (`pending`, `pulling`, `building`, `active`, `inactive`,
    /// `error`, `build_failed`, `removing`).
    public var state: String
    public var errorReason: String?
    /// The image it is made from (`imageName`), if any.
    public var imageName: String?
    /// The Dockerfile it is built from (`buildInfo.dockerfileContent`), if any.
    public var dockerfile: String?
    /// JSON array of strings (`entrypoint`), if given.
    public var entrypoint: String?
    public var cpu: Int
    public var memoryGiB: Int
    public var diskGiB: Int
    /// Bytes of its unpacked layers.
    public var size: Int64?
    public var createdAt: Double
    public var updatedAt: Double
    public var lastUsedAt: Double?

    public init(
        id: String, organizationId: String, name: String, state: String, errorReason: String? = nil, imageName: String?,
        dockerfile: String?, entrypoint: String?, cpu: Int, memoryGiB: Int, diskGiB: Int, size: Int64? = nil, createdAt: Double,
        updatedAt: Double, lastUsedAt: Double? = nil
    ) {
        self.id = id
        self.organizationId = organizationId
        self.name = name
        self.state = state
        self.errorReason = errorReason
        self.imageName = imageName
        self.dockerfile = dockerfile
        self.entrypoint = entrypoint
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.diskGiB = diskGiB
        self.size = size
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastUsedAt = lastUsedAt
    }
}

extension SandboxDatabase {
    static func registerSnapshotMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v10-snapshots") { db in
            try db.create(table: "snapshot") { t in
                t.primaryKey("id", .text)
                t.column("organizationId", .text).notNull()
                t.column("name", .text).notNull()
                t.column("state", .text).notNull()
                t.column("errorReason", .text)
                t.column("imageName", .text)
                t.column("dockerfile", .text)
                t.column("entrypoint", .text)
                t.column("cpu", .integer).notNull()
                t.column("memoryGiB", .integer).notNull()
                t.column("diskGiB", .integer).notNull()
                t.column("size", .integer)
                t.column("createdAt", .double).notNull()
                t.column("updatedAt", .double).notNull()
                t.column("lastUsedAt", .double)
                t.uniqueKey(["organizationId", "name"])
            }
            try db.alter(table: "sandbox") { t in t.add(column: "snapshotRef", .text) }
        }
    }

    /// Inserts a new snapshot; a name already taken in the organization is a conflict.
    public func insertSnapshot(_ record: SnapshotRecord) throws {
        try write { db in
            if try SnapshotRecord.filter(Column("organizationId") == record.organizationId && Column("name") == record.name).fetchCount(db) > 0 {
                throw AtollError(.conflict, "snapshot \"\(record.name)\" already exists")
            }
            try record.insert(db)
        }
    }

    /// By id, else by name, within the organization.
    public func snapshot(idOrName: String, organizationId: String) throws -> SnapshotRecord? {
        try read { db in
            if let record = try SnapshotRecord.fetchOne(db, key: idOrName), record.organizationId == organizationId { return record }
            return try SnapshotRecord.filter(Column("organizationId") == organizationId && Column("name") == idOrName).fetchOne(db)
        }
    }

    public func snapshot(id: String) throws -> SnapshotRecord? {
        try read { db in try SnapshotRecord.fetchOne(db, key: id) }
    }

    /// A page of the organization's snapshots, newest first, and the total.
    public func snapshots(organizationId: String?, offset: Int, limit: Int) throws -> (items: [SnapshotRecord], total: Int) {
        try read { db in
            var request = SnapshotRecord.all()
            if let organizationId { request = request.filter(Column("organizationId") == organizationId) }
            let total = try request.fetchCount(db)
            let items = try request.order(Column("createdAt").desc, Column("id")).limit(limit, offset: offset).fetchAll(db)
            return (items, total)
        }
    }

    /// Changes a snapshot in one transaction; nil if it is gone.
    @discardableResult
    public func updateSnapshot(id: String, _ change: (inout SnapshotRecord) throws -> Void) throws -> SnapshotRecord? {
        try write { db in
            guard var record = try SnapshotRecord.fetchOne(db, key: id) else { return nil }
            try change(&record)
            try record.update(db)
            return record
        }
    }

    /// Deletes a snapshot unless a sandbox still uses it (then a conflict naming one).
    public func deleteSnapshot(id: String) throws {
        try write { db in
            if let user = try String.fetchOne(db, sql: "SELECT id FROM sandbox WHERE snapshotRef = ? LIMIT 1", arguments: [id]) {
                throw AtollError(.conflict, "the snapshot is used by sandbox \(user); delete its sandboxes first")
            }
            _ = try SnapshotRecord.deleteOne(db, key: id)
        }
    }

    /// Active snapshots last used (or made) before `cutoff` become `inactive`, in one statement.
    public func deactivateSnapshots(unusedBefore cutoff: Double, at: Double) throws {
        try write { db in
            try db.execute(
                sql: "UPDATE snapshot SET state = 'inactive', updatedAt = ? WHERE state = 'active' AND COALESCE(lastUsedAt, updatedAt) < ?",
                arguments: [at, cutoff])
        }
    }

    /// Ids of every registered snapshot (what the image store's garbage collection keeps).
    public func snapshotIDs() throws -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT id FROM snapshot") }
    }
}
