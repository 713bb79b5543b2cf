public import AtollCore
import Foundation
import GRDB

/// Sandbox addresses on the sandbox subnet: each sandbox keeps one from its first start until it
/// is deleted, and no two sandboxes ever hold the same one (a unique index backs the allocation,
/// which runs in one write transaction, so concurrent processes cannot pick the same address).
extension SandboxDatabase {
    static func registerAddressMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-unique-addresses") { db in
            try db.execute(sql: "CREATE UNIQUE INDEX sandbox_address ON sandbox(address) WHERE address IS NOT NULL")
        }
    }

    /// The sandbox's address on `subnet`: the one it holds, or the lowest free one (an address on
    /// another subnet, after a configuration change, is replaced).
    @discardableResult
    public func assignAddress(id: String, subnet: SandboxSubnet, at: Double) throws -> IPv4Address {
        try write { db in
            guard var row = try SandboxRow.fetchOne(db, key: id) else { throw AtollError(.notFound, "sandbox \(id) not found") }
            if let text = row.address, let address = IPv4Address(text), subnet.slot(of: address) != nil { return address }
            let taken = Set(
                try String.fetchAll(db, sql: "SELECT address FROM sandbox WHERE address IS NOT NULL")
                    .compactMap { IPv4Address($0).flatMap(subnet.slot(of:)) })
            guard let slot = subnet.slots.first(where: { !taken.contains($0) }) else {
                throw AtollError(
                    .resourceExhausted,
                    "all \(subnet.slots.count) addresses of the sandbox subnet \(subnet.cidr) are in use; delete sandboxes or configure a larger subnet (ATOLL_SUBNET)"
                )
            }
            let address = subnet.address(slot: slot)
            row.address = address.description
            row.updatedAt = at
            try row.update(db)
            return address
        }
    }
}
