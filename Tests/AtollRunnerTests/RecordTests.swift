import AtollCore
import AtollRuntime
import AtollStore
import AtollTestSupport
import Testing

@Suite("runner: the sandbox record")
struct RecordTests {
    @Test("a damaged record is a loud error naming the sandbox and the column, never a different sandbox or a quiet error state")
    func damagedRecord() async throws {
        try await withRunner { f in
            let sandbox = try await f.manager.create(CreateParameters(name: "victim"))
            _ = try f.manager.database.update(id: sandbox.id.rawValue, at: 0) { $0.state = "exploded" }
            await expectError(.internal, containing: "sandbox \"\(sandbox.id)\" is damaged: state \"exploded\" is not a state Atoll knows") {
                try await f.manager.get("victim")
            }
            await expectError(.internal, containing: "is damaged") { try await f.manager.list() }
            _ = try f.manager.database.update(id: sandbox.id.rawValue, at: 0) {
                $0.state = SandboxState.stopped.rawValue
                $0.networkAllowList = "not a cidr"
            }
            await expectError(.internal, containing: "the network allow list") { try await f.manager.get("victim") }
        }
    }

    @Test("pool membership reads and writes the pool column as a type")
    func poolMembership() async throws {
        try await withRunner { f in
            let sandbox = try await f.manager.create(CreateParameters())
            var row = try #require(try f.manager.database.sandbox(id: sandbox.id.rawValue))
            #expect(row.poolMembership == nil)
            row.poolMembership = .claiming(token: "t1")
            #expect(row.pool == WarmPool.claimingPrefix + "t1")
            #expect(row.poolMembership == .claiming(token: "t1"))
            row.poolMembership = .member(key: "default/1/1/3/sandbox")
            #expect(row.poolMembership == .member(key: "default/1/1/3/sandbox"))
        }
    }
}
