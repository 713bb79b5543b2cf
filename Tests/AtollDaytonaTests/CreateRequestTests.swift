import AtollCore
import AtollDaytona
import AtollRuntime
import AtollTestSupport
import AtollWire
import Foundation
import Testing

@Suite("Daytona adapter: create requests and network policies")
struct CreateRequestTests {
    /// The network policy a create through the adapter (the path of atolld and of the embedded
    /// CLI) records.
    static func created(blockAll: Bool?, allowList: String?) async throws -> NetworkPolicy {
        try await withRunner { f in
            let body = CreateSandboxRequest(networkBlockAll: blockAll, networkAllowList: allowList)
            return try await f.manager.create(body, organizationId: nil).network
        }
    }

    /// The policy a network-settings update to the same fields leaves in force.
    static func updated(blockAll: Bool?, allowList: String?) async throws -> NetworkPolicy {
        try await withRunner { f in
            let sandbox = try await f.manager.create(CreateParameters(network: NetworkPolicy(blockAll: true)))
            return try await f.manager.updateNetworkSettings(sandbox.id.rawValue, blockAll: blockAll, allowList: allowList).network
        }
    }

    @Test(
        "an empty allow list means open egress at create and in a settings update alike (never block-all)",
        arguments: [
            (Bool?.none, String?.some(""), NetworkPolicy.open),
            (nil, " ", .open),
            (nil, " , ,", .open),
            (false, "", .open),
            (true, "", NetworkPolicy(blockAll: true)),
            (true, nil, NetworkPolicy(blockAll: true)),
            (false, "10.0.0.0/8, 192.168.1.0/24", NetworkPolicy(allowList: ["10.0.0.0/8", "192.168.1.0/24"])),
            (nil, "10.0.0.0/8", NetworkPolicy(allowList: ["10.0.0.0/8"])),
        ])
    func emptyAllowListAgrees(blockAll: Bool?, allowList: String?, expected: NetworkPolicy) async throws {
        #expect(try NetworkPolicy.requested(blockAll: blockAll, allowList: allowList) == expected)
        #expect(try await Self.created(blockAll: blockAll, allowList: allowList) == expected)
        #expect(try await Self.updated(blockAll: blockAll, allowList: allowList) == expected)
    }

    @Test("block-all beside a non-empty allow list is refused at create and in an update, naming both fields")
    func contradictoryPolicy() async throws {
        await expectError(.invalidArgument, containing: "networkBlockAll is true and networkAllowList is not empty") {
            try await Self.created(blockAll: true, allowList: "10.0.0.0/8")
        }
        await expectError(.invalidArgument, containing: "networkBlockAll is true and networkAllowList is not empty") {
            try await Self.updated(blockAll: true, allowList: "10.0.0.0/8")
        }
    }

    @Test("omitted fields take the runner's defaults: resources and lifecycle intervals")
    func defaults() throws {
        guard case .sandbox(let parameters) = try CreateSandboxRequest().intent(organizationId: "org") else {
            Issue.record("a plain create is a sandbox create")
            return
        }
        #expect(parameters.resources == Resources.defaults)
        #expect(parameters.intervals == LifecycleIntervals.defaults)
        #expect(parameters.network == .open)
        #expect(parameters.organizationId == "org")
    }

    @Test("fields Atoll cannot honour are refused by name, never dropped")
    func refusals() {
        var body = CreateSandboxRequest()
        body.domainAllowList = "example.com"
        #expect(throws: AtollError.self) { try body.intent(organizationId: nil) }
        body = CreateSandboxRequest()
        body.gpu = 1
        #expect { try body.intent(organizationId: nil) } throws: { ($0 as? AtollError)?.message.contains("gpu") == true }
        for (field, change) in [
            ("target", { (b: inout CreateSandboxRequest) in b.target = "eu" }), ("kvm", { $0.kvm = true }), ("gpuType", { $0.gpuType = "A100" }),
            ("secrets", { $0.secrets = [.present] }),
        ] as [(String, (inout CreateSandboxRequest) -> Void)] {
            body = CreateSandboxRequest()
            change(&body)
            #expect { try body.intent(organizationId: nil) } throws: { ($0 as? AtollError)?.message.contains(field) == true }
        }
        // Honoured now: a TTL, auto-pause and public reach the runner's parameters.
        body = CreateSandboxRequest()
        body.ttlMinutes = 5
        body.autoPauseInterval = 7
        body.public = true
        guard case .sandbox(let parameters) = try? body.intent(organizationId: nil) else {
            Issue.record("a TTL and auto-pause are honoured")
            return
        }
        #expect(parameters.ttlMinutes == 5 && parameters.autoPause == 7 && parameters.isPublic)
    }

    @Test("an image build goes through the same validation as any create; one Atoll cannot do is build_failed with the reason")
    func failedBuildValidates() async throws {
        try await withRunner { f in
            var body = CreateSandboxRequest(env: ["BAD NAME": "x"])
            // A build context needs object storage: recorded in build_failed, with the reason.
            body.buildInfo = CreateSandboxRequest.BuildInfo(dockerfileContent: "FROM python:3.12\n", contextHashes: ["abc"])
            await expectError(.invalidArgument, containing: "BAD NAME") {
                try await f.manager.create(body, organizationId: nil)
            }
            body.env = nil
            body.autoStopInterval = -5
            await expectError(.invalidArgument, containing: "autoStopInterval") {
                try await f.manager.create(body, organizationId: nil)
            }
            body.autoStopInterval = nil
            let failed = try await f.manager.create(body, organizationId: nil)
            #expect(failed.state == .buildFailed)
            #expect(failed.errorReason?.contains("python:3.12") == true && failed.errorReason?.contains("object storage") == true)
            #expect(failed.labels[Language.labelKey] == Language.default.rawValue)
            // Without a context it is built: pending_build at once, then build_failed naming the
            // base image, which no registry serves.
            body.buildInfo = CreateSandboxRequest.BuildInfo(dockerfileContent: "FROM 127.0.0.1:9/none:1\n", contextHashes: nil)
            let pending = try await f.manager.create(body, organizationId: nil)
            #expect(pending.state == .pendingBuild)
            var current = pending
            for _ in 0..<200 where current.state == .pendingBuild {
                try await Task.sleep(for: .milliseconds(50))
                current = try await f.manager.get(pending.id.rawValue)
            }
            #expect(
                current.state == .buildFailed && current.errorReason?.contains("127.0.0.1:9/none:1") == true, "\(current.state) \(current.errorReason ?? "")")
        }
    }

    @Test("the base image of a Dockerfile")
    func baseImage() {
        #expect(CreateSandboxRequest.baseImage("FROM python:3.12-slim\n") == "python:3.12-slim")
        #expect(CreateSandboxRequest.baseImage("# comment\nfrom --platform=linux/amd64 debian:bookworm AS base\nRUN x") == "debian:bookworm")
        #expect(CreateSandboxRequest.baseImage("RUN echo\n") == nil)
    }
}
