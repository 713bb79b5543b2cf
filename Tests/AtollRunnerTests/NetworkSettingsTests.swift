import AtollCore
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Testing

@Suite("runner: addresses and network settings on a fake driver")
struct NetworkSettingsTests {
    @Test("each sandbox gets the lowest free address of the subnet, keeps it across stop and start, and frees it on delete")
    func addresses() async throws {
        try await withRunner { f in
            let subnet = try SandboxSubnet(parsing: NetworkSettings.defaultSubnet)
            let a = try await f.manager.create(CreateParameters())
            let b = try await f.manager.create(CreateParameters())
            #expect(a.address == subnet.address(slot: 2).description)
            #expect(b.address == subnet.address(slot: 3).description)
            _ = try await f.manager.stop(a.id.rawValue)
            #expect(try await f.manager.start(a.id.rawValue).address == a.address)
            try await f.manager.delete(a.id.rawValue)
            let c = try await f.manager.create(CreateParameters())
            #expect(c.address == a.address, "a deleted sandbox's address is free again")
            // The driver is handed the address and the policy.
            #expect(f.driver.calls("start").count == 4)
        }
    }

    @Test("a full subnet is a clear error and the sandbox is left in error, recoverable")
    func subnetFull() async throws {
        let dir = "/tmp/atoll-runner-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try NetworkSettings(subnet: try SandboxSubnet(parsing: "10.89.0.0/29"))  // 5 sandbox addresses
        let configuration = RuntimeConfiguration(dataDirectory: dir, cgroupName: "unused", idRangeSlots: 64, network: settings)
        let manager = try await SandboxManager.open(configuration: configuration, driver: FakeDriver(), clock: ManualClock())
        for _ in 0..<5 { _ = try await manager.create(CreateParameters()) }
        await expectError(.resourceExhausted, containing: "all 5 addresses of the sandbox subnet 10.89.0.0/29 are in use") {
            try await manager.create(CreateParameters())
        }
        let failed = try await manager.list().filter { $0.state == .error }
        #expect(failed.count == 1 && failed.first?.recoverable == true)
        await manager.close()
    }

    @Test("settings follow the SDK: block all, allow list, restore; a started sandbox's firewall is updated, a stopped one's is not")
    func settings() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            let id = s.id.rawValue
            #expect(try await f.manager.updateNetworkSettings(id, blockAll: true, allowList: nil).network == NetworkPolicy(blockAll: true))
            #expect(
                try await f.manager.updateNetworkSettings(id, blockAll: nil, allowList: "10.0.0.0/8, 192.168.1.0/24").network
                    == NetworkPolicy(allowList: ["10.0.0.0/8", "192.168.1.0/24"]))
            #expect(try await f.manager.updateNetworkSettings(id, blockAll: false, allowList: nil).network == .open)
            #expect(try await f.manager.updateNetworkSettings(id, blockAll: nil, allowList: "").network == .open)
            #expect(
                f.driver.calls("updateNetworkPolicy") == [
                    "updateNetworkPolicy \(id) block-all", "updateNetworkPolicy \(id) 10.0.0.0/8,192.168.1.0/24",
                    "updateNetworkPolicy \(id) open", "updateNetworkPolicy \(id) open",
                ])
            _ = try await f.manager.stop(id)
            #expect(try await f.manager.updateNetworkSettings(id, blockAll: true, allowList: nil).network.blockAll)
            #expect(f.driver.calls("updateNetworkPolicy").count == 4, "a stopped sandbox gets the policy at its next start")
            #expect(try await f.manager.get(id).network.blockAll)
        }
    }

    @Test("a failed firewall update keeps the old policy on record")
    func failedUpdate() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters(network: NetworkPolicy(allowList: ["10.0.0.0/8"])))
            f.driver.failNext("updateNetworkPolicy", AtollError(.system, "nftables rejected the change: boom"))
            await expectError(.system, containing: "boom") {
                try await f.manager.updateNetworkSettings(s.id.rawValue, blockAll: true, allowList: nil)
            }
            #expect(try await f.manager.get(s.id.rawValue).network == NetworkPolicy(allowList: ["10.0.0.0/8"]))
        }
    }

    @Test("settings during a transition are a conflict naming it")
    func conflict() async throws {
        try await withRunner { f in
            let s = try await f.manager.create(CreateParameters())
            f.driver.close("stop")
            let stopping = Task { try await f.manager.stop(s.id.rawValue) }
            try await eventually("stopping") { try await f.manager.get(s.id.rawValue).state == .stopping }
            await expectError(.conflict, containing: "is stopping") {
                try await f.manager.updateNetworkSettings(s.id.rawValue, blockAll: true, allowList: nil)
            }
            f.driver.open("stop")
            _ = try await stopping.value
            #expect(try await f.manager.get(s.id.rawValue).network == .open)
        }
    }

    @Test("opening a runner rebuilds the network from the sandboxes that run or are about to")
    func prepareOnOpen() async throws {
        try await withRunner { f in
            let running = try await f.manager.create(CreateParameters())
            let stopped = try await f.manager.create(CreateParameters())
            _ = try await f.manager.stop(stopped.id.rawValue)
            _ = try await f.reopen()
            #expect(f.driver.networkPreparations.last == [running.id.rawValue])
        }
    }
}
