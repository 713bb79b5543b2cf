import AtollCore
import AtollSandbox
import AtollStore
import Foundation

extension SandboxManager {
    /// States in which a sandbox runs or is about to: the firewall has rules for these (rules for
    /// one whose start then fails are removed by that start).
    static let networkedStates: Set<SandboxState> = [.creating, .starting, .started, .restoring, .resizing]

    /// Changes a sandbox's egress policy (Daytona's network settings, see
    /// `NetworkPolicy.forUpdate`). A started sandbox's firewall changes at once, existing
    /// connections included; otherwise the policy applies from its next start.
    public func updateNetworkSettings(
        _ idOrName: String, blockAll: Bool?, allowList: String?, domainAllowList: String? = nil,
        organizationId: String? = nil
    ) async throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        let policy = try NetworkPolicy.forUpdate(blockAll: blockAll, allowList: allowList, domainAllowList: domainAllowList)
        let settled: Set<SandboxState> = [.started, .stopped, .archived, .error, .buildFailed]
        let database = self.database
        let old = current.networkPolicy
        func store(_ policy: NetworkPolicy) throws -> SandboxRow {
            do {
                return try database.update(id: current.id, expecting: settled, at: self.now) { row in
                    row.networkPolicy = policy
                }
            } catch let mismatch as StateMismatch {
                throw Self.conflict(mismatch.row, operation: "given new network settings")
            }
        }
        let updated = try store(policy)
        guard updated.sandboxState == .started else { return Sandbox(updated).withActivity(activity) }
        let id = updated.id
        do {
            // Read again under the network lock: of two concurrent changes, the later one's
            // policy is the one left in force.
            try await driver.updateNetworkPolicy {
                guard let row = try database.sandbox(id: id), row.sandboxState == .started else { return nil }
                return try Self.machine(row)
            }
        } catch {
            // The firewall kept the old policy; so does the record.
            _ = try? store(old)
            throw error
        }
        return Sandbox(updated).withActivity(activity)
    }

    /// Brings the host side of networking up and rebuilds the firewall from the database (at
    /// start-up, after reconciling). Returns notes for the log.
    func prepareNetwork() async throws -> [String] {
        let database = self.database
        return try await driver.prepareNetwork {
            try database.all().filter { Self.networkedStates.contains($0.sandboxState) }.map(Self.machine)
        }
    }
}
