import AtollCore
import AtollWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import AtollAPI

/// The dashboard's files and the two API calls it adds, on the fake driver. The dashboard at
/// work, in a browser, is Tests/sdk/test_dashboard.py.
extension RouteTests {
    @Test("the dashboard is served from the binary with its content types and policy; / leads there")
    func dashboardFiles() async throws {
        try await withAPI { api, _ in
            for (path, type, text) in [
                ("/dashboard", "text/html", "<title>Atoll</title>"), ("/dashboard/app.js", "text/javascript", "function route("),
                ("/dashboard/style.css", "text/css", ".state.started"),
            ] {
                let response = try await api.client.execute(uri: path, method: .get, headers: [:], body: nil)
                #expect(response.status == .ok, "\(path)")
                #expect(response.headers[.contentType]?.hasPrefix(type) == true, "\(path)")
                #expect(response.headers[.contentSecurityPolicy]?.contains("default-src 'self'") == true, "\(path)")
                #expect(String(buffer: response.body).contains(text), "\(path)")
            }
            let missing = try await api.client.execute(uri: "/dashboard/nope.js", method: .get, headers: [:], body: nil)
            #expect(missing.status == .notFound)
            let root = try await api.client.execute(uri: "/", method: .get, headers: [:], body: nil)
            #expect(root.status == .found && root.headers[.location] == "/dashboard")
        }
    }

    @Test("/api/me names the key's organization; a sandbox's history lists its state changes")
    func dashboardCalls() async throws {
        try await withAPI { api, _ in
            let (status, body) = try await api.send(.get, "/api/me")
            #expect(status == .ok && body.contains("\"organizationId\":\"org\""), "\(body)")
            try await api.fails(.get, "/api/me", key: "nope", status: 401, code: "unauthenticated", containing: "invalid or revoked")
            let id = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: "{}").id
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/\(id)/stop")
            struct Item: Decodable {
                var from: String?
                var to: String
            }
            let history = try await api.ok([Item].self, .get, "/api/sandbox/\(id)/history")
            #expect(history.map(\.to).suffix(2) == ["stopping", "stopped"], "\(history.map(\.to))")
            try await api.fails(.get, "/api/sandbox/nosuch/history", status: 404, code: "not_found", containing: "nosuch")
        }
    }
}
