public import AtollCore
import Foundation
import GRDB

/// The runner's database: SQLite through GRDB, in WAL mode with `synchronous = FULL`, so a
/// committed write survives a crash of the process and of the machine. Every method is one
/// transaction; several processes may open the same file (SQLite serialises the writers).
public final class SandboxDatabase: Sendable {
    let pool: DatabasePool
    public let path: String

    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw AtollError(.unavailable, "cannot open the database \(path)", cause: error)
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "sandbox") { t in
                t.primaryKey("id", .text)
                t.column("organizationId", .text).notNull()
                t.column("name", .text).notNull()
                t.column("state", .text).notNull()
                t.column("errorReason", .text)
                t.column("recoverable", .boolean).notNull().defaults(to: false)
                t.column("snapshot", .text).notNull()
                t.column("user", .text).notNull()
                t.column("env", .text).notNull()
                t.column("labels", .text).notNull()
                t.column("cpu", .integer).notNull()
                t.column("memoryGiB", .integer).notNull()
                t.column("diskGiB", .integer).notNull()
                t.column("pidsMax", .integer).notNull()
                t.column("autoStop", .integer).notNull()
                t.column("autoArchive", .integer).notNull()
                t.column("autoDelete", .integer).notNull()
                t.column("networkBlockAll", .boolean).notNull()
                t.column("networkAllowList", .text)
                t.column("uidBase", .integer).notNull().unique()
                t.column("uidCount", .integer).notNull()
                t.column("address", .text)
                t.column("initPid", .integer)
                t.column("initStartTime", .integer)
                t.column("archivePath", .text)
                t.column("archiveBytes", .integer)
                t.column("archiveSHA256", .text)
                t.column("ownerPid", .integer)
                t.column("ownerStartTime", .integer)
                t.column("opPid", .integer)
                t.column("opStartTime", .integer)
                t.column("opToken", .text)
                t.column("deadline", .double)
                t.column("createdAt", .double).notNull()
                t.column("updatedAt", .double).notNull()
                t.column("lastActivityAt", .double).notNull()
                t.uniqueKey(["organizationId", "name"])
            }
            try db.create(table: "transition") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("sandboxId", .text).notNull().indexed()
                t.column("at", .double).notNull()
                t.column("fromState", .text)
                t.column("toState", .text).notNull()
                t.column("reason", .text)
            }
        }
        registerKeyMigrations(&migrator)
        registerAddressMigrations(&migrator)
        registerMeteringMigrations(&migrator)
        registerWarmPoolMigrations(&migrator)
        registerPreviewMigrations(&migrator)
        registerSnapshotMigrations(&migrator)
        return migrator
    }

    // MARK: - Reads

    public func sandbox(id: String) throws -> SandboxRow? {
        try read { db in try SandboxRow.fetchOne(db, key: id)?.checked() }
    }

    /// By id, else by name within the organization.
    public func sandbox(idOrName: String, organizationId: String) throws -> SandboxRow? {
        try read { db in
            if let row = try SandboxRow.fetchOne(db, key: idOrName), row.organizationId == organizationId { return try row.checked() }
            return try SandboxRow.filter(Column("organizationId") == organizationId && Column("name") == idOrName).fetchOne(db)?.checked()
        }
    }

    /// What a sandbox holds, as admission control counts it.
    public struct Holding: Sendable {
        public var id: String
        public var organizationId: String
        public var state: SandboxState
        public var cpu: Int
        public var memoryGiB: Int
        public var diskGiB: Int
    }

    public func all() throws -> [SandboxRow] {
        try read { db in try SandboxRow.order(Column("createdAt"), Column.rowID).fetchAll(db).map { try $0.checked() } }
    }

    /// What every sandbox not yet destroyed is allocated, and in which state: only the columns
    /// admission control adds up (it runs before every create, start and resize).
    public func holdings() throws -> [Holding] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, organizationId, state, cpu, memoryGiB, diskGiB FROM sandbox WHERE state != 'destroyed'").map {
                Holding(
                    id: $0["id"], organizationId: $0["organizationId"], state: SandboxState(rawValue: $0["state"]) ?? .error,
                    cpu: $0["cpu"], memoryGiB: $0["memoryGiB"], diskGiB: $0["diskGiB"])
            }
        }
    }

    public func history(id: String) throws -> [TransitionRow] {
        try read { db in try TransitionRow.filter(Column("sandboxId") == id).order(Column("id")).fetchAll(db) }
    }

    // MARK: - Writes

    /// Inserts a new sandbox with the lowest free id range, recording its first state.
    /// A taken name is a conflict that names it.
    public func insert(_ row: SandboxRow, idRangeStart: Int64, idRangeSize: Int64, idRangeSlots: Int, reason: String?) throws -> SandboxRow {
        try write { db in
            if try SandboxRow.filter(Column("organizationId") == row.organizationId && Column("name") == row.name).fetchCount(db) > 0 {
                throw AtollError.nameTaken(row.name)
            }
            if try SandboxRow.fetchOne(db, key: row.id) != nil {
                throw AtollError(.conflict, "sandbox \(row.id) already exists")
            }
            let used = Set(try Int64.fetchAll(db, sql: "SELECT uidBase FROM sandbox"))
            guard let slot = (0..<idRangeSlots).first(where: { !used.contains(idRangeStart + Int64($0) * idRangeSize) }) else {
                throw AtollError(.resourceExhausted, "all \(idRangeSlots) sandbox id ranges are in use")
            }
            var new = row
            new.uidBase = idRangeStart + Int64(slot) * idRangeSize
            new.uidCount = idRangeSize
            try new.insert(db)
            try TransitionRow(sandboxId: row.id, at: row.createdAt, fromState: nil, toState: row.state, reason: reason).insert(db)
            return new
        }
    }

    /// Changes a sandbox in one transaction. When `expecting` is given the current state must be
    /// one of them (otherwise `StateMismatch` carries the current row); a state change is appended
    /// to the history with `reason`, and the allocation period follows it (see `Metering`), its
    /// boundary at `at` or, for `.lastSample`, at the period's last durable sample.
    @discardableResult
    public func update(
        id: String, expecting: Set<SandboxState>? = nil, reason: String? = nil, at: Double,
        boundary: PeriodBoundary = .now, _ change: (inout SandboxRow) throws -> Void
    ) throws -> SandboxRow {
        try write { db in
            guard var row = try SandboxRow.fetchOne(db, key: id) else {
                throw AtollError(.notFound, "sandbox \(id) not found")
            }
            if let expecting, !expecting.contains(row.sandboxState) { throw StateMismatch(row: row) }
            let before = row.state
            try change(&row)
            row.updatedAt = at
            try row.update(db)
            if row.state != before {
                try TransitionRow(sandboxId: id, at: at, fromState: before, toState: row.state, reason: reason).insert(db)
            }
            try Self.applyAllocation(db, row: row, at: at, boundary: boundary, reason: reason ?? "\(before) → \(row.state)")
            return row
        }
    }

    /// Removes a sandbox and its history; its allocation periods are closed at `at` and kept.
    public func delete(id: String, at: Double) throws {
        try write { db in
            try Self.closeAllocation(db, sandboxId: id, at: at, reason: "deleted")
            _ = try SandboxRow.deleteOne(db, key: id)
            try TransitionRow.filter(Column("sandboxId") == id).deleteAll(db)
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch let error as AtollError {
            throw error
        } catch {
            throw AtollError(.internal, "database read failed (\(path))", cause: error)
        }
    }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.write(body)
        } catch let error as AtollError {
            throw error
        } catch let error as StateMismatch {
            throw error
        } catch {
            throw AtollError(.internal, "database write failed (\(path))", cause: error)
        }
    }
}

/// A conditional update found the sandbox in another state.
public struct StateMismatch: Error, Sendable {
    public let row: SandboxRow
}
