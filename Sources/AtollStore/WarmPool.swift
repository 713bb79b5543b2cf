public import AtollCore
import Foundation
import GRDB

extension SandboxDatabase {
    static func registerWarmPoolMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v5-warm-pool") { db in
            try db.alter(table: "sandbox") { t in t.add(column: "pool", .text) }
            try db.create(index: "sandbox_pool", on: "sandbox", columns: ["pool"])
        }
    }

    /// Every pooled sandbox not yet claimed, and those whose claim is under way.
    public func poolMembers() throws -> [SandboxRow] {
        try read { db in try SandboxRow.filter(Column("pool") != nil).order(Column("createdAt"), Column.rowID).fetchAll(db).map { try $0.checked() } }
    }

    /// Takes the oldest ready member of `key` for a claim: in one transaction it is marked
    /// `claiming:TOKEN` (so no other claim can take it) and given `change` (the network policy
    /// the claim asked for, to be in force before the sandbox is anyone's). Members whose PID 1
    /// `isAlive` denies are passed over (the pool's upkeep removes them). Nil when none is ready.
    public func reservePoolMember(
        key: WarmPoolKey, token: String, at: Double, isAlive: (SandboxRow) -> Bool,
        _ change: (inout SandboxRow) -> Void
    ) throws -> SandboxRow? {
        try write { db in
            let ready =
                try SandboxRow
                .filter(
                    Column("pool") == key.description && Column("pidsMax") == key.pidsMax
                        && Column("state") == SandboxState.started.rawValue
                )
                .order(Column("createdAt"), Column.rowID).fetchAll(db)
            guard var member = ready.first(where: isAlive) else { return nil }
            member.pool = WarmPool.claimingPrefix + token
            member.updatedAt = at
            change(&member)
            try member.update(db)
            return member
        }
    }

    /// Hands a reserved member to its new owner: organization, name and `change` (labels, env,
    /// intervals, owner) in one transaction, which also opens its first allocation period and
    /// records the claim in its history. A name already taken in the organization is a conflict.
    /// `cpuBaseline` and `oomBaseline` are the cgroup's counters at the claim: what the member
    /// used while it waited is not the new owner's.
    public func completeClaim(
        id: String, token: String, organizationId: String, name: String?, at: Double,
        cpuBaseline: UInt64 = 0, oomBaseline: UInt64 = 0,
        _ change: (inout SandboxRow) -> Void
    ) throws -> SandboxRow {
        try write { db in
            guard var row = try SandboxRow.fetchOne(db, key: id), row.pool == WarmPool.claimingPrefix + token,
                row.sandboxState == .started
            else {
                throw AtollError(.conflict, "pooled sandbox \(id) was taken away while being claimed")
            }
            let name = name ?? id
            if try SandboxRow.filter(Column("organizationId") == organizationId && Column("name") == name).fetchCount(db) > 0 {
                throw AtollError.nameTaken(name)
            }
            row.organizationId = organizationId
            row.name = name
            row.pool = nil
            row.opPid = nil
            row.opStartTime = nil
            row.createdAt = at
            row.updatedAt = at
            row.lastActivityAt = at
            change(&row)
            try row.update(db)
            try TransitionRow(sandboxId: id, at: at, fromState: row.state, toState: row.state, reason: "claimed from the warm pool").insert(db)
            try Self.applyAllocation(db, row: row, at: at, boundary: .now, reason: "claimed from the warm pool")
            try MeterRow(
                sandboxId: id, organizationId: organizationId, lastCpuNanoseconds: Int64(clamping: cpuBaseline),
                cpuNanosecondsTotal: 0, lastOomKills: Int64(clamping: oomBaseline), oomKillsTotal: 0,
                memoryBytes: 0, diskBytes: 0, at: at
            ).save(db)
            return row
        }
    }
}
