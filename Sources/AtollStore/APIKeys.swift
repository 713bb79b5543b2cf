import AtollCore
import Foundation
public import GRDB

/// An API key as stored: only its SHA-256, never the key itself.
public struct APIKeyRow: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "apiKey"
    /// Short public identifier (the first characters of the key), for listing and revoking.
    public var id: String
    public var organizationId: String
    public var name: String
    public var sha256: String
    public var createdAt: Double
    public var revokedAt: Double?
    /// An administrator's key also sees what belongs to the host rather than to an organization
    /// (the warm pools, the daemon's own series in /metrics).
    public var admin: Bool
}

/// Who a request's key acts for.
public struct KeyHolder: Sendable, Hashable {
    public var organizationId: String
    public var admin: Bool
}

/// API keys: each belongs to an organization; a request carrying it acts for that organization.
extension SandboxDatabase {
    static func registerKeyMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2-api-keys") { db in
            try db.create(table: "apiKey") { t in
                t.primaryKey("id", .text)
                t.column("organizationId", .text).notNull()
                t.column("name", .text).notNull()
                t.column("sha256", .text).notNull().unique()
                t.column("createdAt", .double).notNull()
                t.column("revokedAt", .double)
            }
        }
        migrator.registerMigration("v6-admin-keys") { db in
            try db.alter(table: "apiKey") { t in t.add(column: "admin", .boolean).notNull().defaults(to: false) }
            // The key a daemon generated or was given before keys had roles is its operator's.
            try db.execute(sql: "UPDATE apiKey SET admin = 1 WHERE id = (SELECT id FROM apiKey WHERE organizationId = 'default' ORDER BY createdAt LIMIT 1)")
        }
    }

    /// Creates a key for `organizationId` and returns it with its row. The key is shown once.
    public func createKey(
        organizationId: String, name: String, key givenKey: String? = nil, admin: Bool = false, at: Double
    ) throws -> (key: String, row: APIKeyRow) {
        guard SandboxID.isValid(organizationId) else {
            throw AtollError(.invalidArgument, "invalid organization \"\(organizationId.prefix(64))\": use lower-case letters, digits and '-'")
        }
        let key = givenKey ?? Self.newKey()
        guard key.utf8.count >= 16, key.utf8.count <= 256, key.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw AtollError(.invalidArgument, "an API key must be 16 to 256 printable ASCII characters without spaces")
        }
        let row = APIKeyRow(
            id: String(key.prefix(12)), organizationId: organizationId, name: name,
            sha256: KeyHash.hex(key.utf8), createdAt: at, revokedAt: nil, admin: admin)
        try write { db in
            if var existing = try APIKeyRow.filter(Column("sha256") == row.sha256).fetchOne(db) {
                guard existing.organizationId == organizationId, existing.revokedAt == nil else {
                    throw AtollError(.conflict, "that key is already registered (\(existing.id))")
                }
                if admin && !existing.admin {
                    existing.admin = true
                    try existing.update(db)
                }
                return
            }
            if try APIKeyRow.fetchOne(db, key: row.id) != nil {
                throw AtollError(.conflict, "a key with the prefix \(row.id) already exists; choose another key")
            }
            try row.insert(db)
        }
        return (key, row)
    }

    /// The organization a key acts for, or nil for an unknown or revoked key.
    public func organization(forKey key: String) throws -> String? {
        try holder(ofKey: key)?.organizationId
    }

    /// Who a key acts for, or nil for an unknown or revoked key.
    public func holder(ofKey key: String) throws -> KeyHolder? {
        let hash = KeyHash.hex(key.utf8)
        return try read { db in
            try APIKeyRow.filter(Column("sha256") == hash && Column("revokedAt") == nil).fetchOne(db)
                .map { KeyHolder(organizationId: $0.organizationId, admin: $0.admin) }
        }
    }

    public func keys() throws -> [APIKeyRow] {
        try read { db in try APIKeyRow.order(Column("createdAt")).fetchAll(db) }
    }

    /// Revokes a key by its id; requests with it are refused from now on.
    public func revokeKey(id: String, at: Double) throws {
        try write { db in
            guard var row = try APIKeyRow.fetchOne(db, key: id) else { throw AtollError(.notFound, "API key \(id) not found") }
            row.revokedAt = row.revokedAt ?? at
            try row.update(db)
        }
    }

    /// A new random key: `atl_` and 48 hex digits (192 bits).
    public static func newKey() -> String {
        "atl_" + Hex.string(SecureBytes.random(24))
    }
}
