import AtollCore
import Foundation
import GRDB

/// What the SDK's surface beyond the core keeps per sandbox: whether it is public (preview URLs
/// without a token), the signed preview tokens expired early (until they would have expired
/// anyway, so one stays expired across restarts), auto-pause and TTL, and the key of its signed
/// file URLs.
extension SandboxDatabase {
    static func registerPreviewMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v7-public-and-preview-revocations") { db in
            try db.alter(table: "sandbox") { t in t.add(column: "isPublic", .boolean).notNull().defaults(to: false) }
            try db.create(table: "previewRevocation") { t in
                t.primaryKey("token", .text)
                t.column("expiresAt", .double).notNull()
            }
        }
        migrator.registerMigration("v8-pause-and-ttl") { db in
            try db.alter(table: "sandbox") { t in
                t.add(column: "autoPause", .integer).notNull().defaults(to: 0)
                t.add(column: "expiresAt", .double)
            }
        }
        migrator.registerMigration("v9-signing-keys") { db in
            try db.alter(table: "sandbox") { t in t.add(column: "signingKey", .text) }
        }
    }

    /// Records that `token` (valid until `expiresAt`) no longer opens anything; tokens whose time
    /// has passed anyway are dropped meanwhile.
    public func revokePreviewToken(_ token: String, expiresAt: Double, now: Double) throws {
        try write { db in
            try db.execute(sql: "DELETE FROM previewRevocation WHERE expiresAt < ?", arguments: [now])
            try db.execute(sql: "INSERT OR REPLACE INTO previewRevocation (token, expiresAt) VALUES (?, ?)", arguments: [token, expiresAt])
        }
    }

    public func isPreviewTokenRevoked(_ token: String) throws -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM previewRevocation WHERE token = ?", arguments: [token]) ?? false }
    }
}
