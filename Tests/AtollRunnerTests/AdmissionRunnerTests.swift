import AtollCore
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Foundation
import Testing

@Suite("runner: admission control on a fake driver")
struct AdmissionRunnerTests {
    @Test("creates, starts, resizes and recovers beyond the host's vCPUs are refused before anything is made")
    func hostCapacity() async throws {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        try await withRunner(configure: { $0.capacity = HostCapacity(cpuOvercommit: 2, memoryOvercommit: 0, diskOvercommit: 0) }) { f in
            // 2 × the host's CPUs of 1-vCPU sandboxes fit, one more does not.
            var made: [Sandbox] = []
            for _ in 0..<(2 * cpus) { made.append(try await f.manager.create(CreateParameters())) }
            let calls = f.driver.calls.count
            await expectError(.resourceExhausted, containing: "ATOLL_CPU_OVERCOMMIT") { try await f.manager.create(CreateParameters()) }
            #expect(f.driver.calls.count == calls, "nothing was built for a refused create")
            #expect(try await f.manager.list().count == made.count, "a refused create leaves no sandbox")
            // A stopped sandbox holds no vCPUs: another may start in its place, but it cannot start again.
            _ = try await f.manager.stop(made[0].id.rawValue)
            let replacement = try await f.manager.create(CreateParameters())
            await expectError(.resourceExhausted, containing: "vCPUs of CPU") { try await f.manager.start(made[0].id.rawValue) }
            // A running sandbox's resize asks for its increase only.
            await expectError(.resourceExhausted, containing: "vCPUs") { try await f.manager.resize(replacement.id.rawValue, cpu: 2) }
            _ = try await f.manager.delete(made[1].id.rawValue)
            let grown = try await f.manager.resize(replacement.id.rawValue, cpu: 2)
            #expect(grown.resources.cpu == 2)
        }
    }

    @Test("organization quotas count only that organization's sandboxes")
    func quotas() async throws {
        try await withRunner(configure: {
            $0.capacity = .unlimited
            $0.quota = OrganizationQuota(maxCPU: 3, maxMemoryGiB: 0, maxDiskGiB: 0, maxSandboxes: 2)
        }) { f in
            _ = try await f.manager.create(CreateParameters(resources: Resources(cpu: 2, memoryGiB: 1, diskGiB: 3), organizationId: "acme"))
            await expectError(.quotaExceeded, containing: "ATOLL_ORG_MAX_CPU") {
                try await f.manager.create(CreateParameters(resources: Resources(cpu: 2, memoryGiB: 1, diskGiB: 3), organizationId: "acme"))
            }
            let second = try await f.manager.create(CreateParameters(organizationId: "acme"))
            // Stopped, it holds no vCPUs — but it still counts as one of acme's sandboxes.
            _ = try await f.manager.stop(second.id.rawValue, organizationId: "acme")
            await expectError(.quotaExceeded, containing: "ATOLL_ORG_MAX_SANDBOXES") { try await f.manager.create(CreateParameters(organizationId: "acme")) }
            // Another organization is not held to acme's holdings.
            _ = try await f.manager.create(CreateParameters(resources: Resources(cpu: 3, memoryGiB: 1, diskGiB: 3), organizationId: "other"))
        }
    }
}
