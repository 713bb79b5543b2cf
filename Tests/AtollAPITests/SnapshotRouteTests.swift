import AtollCore
import AtollRuntime
import AtollStore
import AtollTestSupport
import AtollWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import AtollAPI

/// Daytona's snapshot API on the fake driver: validation, names, pagination, tenancy and the
/// errors. Snapshots really pulled and built are Tests/sdk/test_images.py.
extension RouteTests {
    @Test("snapshot create answers 200 pending; a pull that cannot work ends in error with the reason")
    func snapshotCreate() async throws {
        try await withAPI { api, f in
            let (otherKey, _) = try f.manager.database.createKey(organizationId: "other", name: "other", admin: false, at: 0)
            // A registry that does not listen: the pull fails fast, and says why.
            let created = try await api.ok(
                SnapshotDTO.self, .post, "/api/snapshots", json: #"{"name":"daytonaio/sandbox:0.5.0","imageName":"127.0.0.1:9/none:1","cpu":2}"#)
            #expect(created.state == "pending" && created.cpu == 2 && created.mem == 1 && created.general == false)
            var current = created
            for _ in 0..<200 where ["pending", "pulling"].contains(current.state) {
                try await Task.sleep(for: .milliseconds(50))
                current = try await api.ok(SnapshotDTO.self, .get, "/api/snapshots/daytonaio%2Fsandbox%3A0.5.0")
            }
            #expect(current.state == "error" && current.errorReason?.contains("127.0.0.1:9/none:1") == true, "\(current)")
            try await api.fails(
                .post, "/api/snapshots", json: #"{"name":"daytonaio/sandbox:0.5.0","imageName":"x:1"}"#, status: 409, code: "conflict",
                containing: "already exists")
            let page = try await api.ok(PaginatedSnapshots.self, .get, "/api/snapshots?page=1&limit=1")
            #expect(page.total == 1 && page.items.map(\.id) == [created.id] && page.totalPages == 1)
            // A sandbox cannot be made from a snapshot that is not active.
            try await api.fails(.post, "/api/sandbox", json: #"{"snapshot":"daytonaio/sandbox:0.5.0"}"#, status: 409, code: "conflict", containing: "error")
            let (_, otherList) = try await api.send(.get, "/api/snapshots", key: otherKey)
            #expect(try JSONDecoder().decode(PaginatedSnapshots.self, from: Data(otherList.utf8)).total == 0)
            try await api.fails(.get, "/api/snapshots/\(created.id)", key: otherKey, status: 404, code: "not_found", containing: "not found")
            _ = try await api.send(.delete, "/api/snapshots/\(created.id)")
            try await api.fails(.get, "/api/snapshots/\(created.id)", status: 404, code: "not_found", containing: "not found")
        }
    }

    @Test(
        "bad snapshot requests are 400s naming what was wrong",
        arguments: [
            (#"{"name":"../x","imageName":"python:3.12"}"#, "invalid snapshot name"),
            (#"{"name":"ok"}"#, "exactly one of imageName or buildInfo"),
            (#"{"name":"ok","imageName":"UPPER"}"#, "invalid image reference"),
            (#"{"name":"ok","buildInfo":{"dockerfileContent":"RUN x"}}"#, "before the first FROM"),
            (#"{"name":"ok","imageName":"python:3.12","cpu":99}"#, "cpu"),
            (#"{"name":"ok","buildInfo":{"dockerfileContent":"FROM x","contextHashes":["abc"]}}"#, "object storage"),
            (#"{"name":"default","imageName":"python:3.12"}"#, "already exists"),
        ])
    func snapshotBadRequests(body: String, message: String) async throws {
        try await withAPI { api, _ in
            let (status, text) = try await api.send(.post, "/api/snapshots", json: body)
            #expect([400, 409].contains(status.code) && text.contains(message), "\(status) \(text)")
        }
    }

    @Test("activate refuses an active or failed snapshot; a sandbox names an unknown snapshot as not found")
    func snapshotActivateAndUnknown() async throws {
        try await withAPI { api, _ in
            try await api.fails(.post, "/api/snapshots/nope/activate", status: 404, code: "not_found", containing: "nope")
            try await api.fails(
                .post, "/api/sandbox", json: #"{"snapshot":"my_awesome_snapshot"}"#, status: 404, code: "not_found", containing: "my_awesome_snapshot")
            try await api.fails(.get, "/api/snapshots/nope/build-logs-url", status: 404, code: "not_found", containing: "nope")
        }
    }
}
