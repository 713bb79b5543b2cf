import AtollAPI
import AtollCore
import AtollRuntime
import AtollStore
import AtollTestSupport
import AtollWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Every route group through the real router (HummingbirdTesting's `.router` mode, no socket)
/// over a runner on the fake driver: success and each class of error, with the status and the
/// body the SDK sees. No root needed.
@Suite("API routes on a fake driver")
struct RouteTests {
    struct Client {
        let client: any TestClientProtocol
        let key: String

        func send(
            _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, key: String? = nil,
            headers: HTTPFields = [:]
        ) async throws -> (HTTPResponse.Status, String) {
            var fields = headers
            if let key = key ?? Optional(self.key), !key.isEmpty { fields[.authorization] = "Bearer \(key)" }
            if json != nil { fields[.contentType] = "application/json" }
            let response = try await client.execute(uri: uri, method: method, headers: fields, body: json.map { ByteBuffer(string: $0) })
            return (response.status, String(buffer: response.body))
        }

        /// Sends and decodes a 2xx answer; anything else fails the test with the body.
        func ok<T: Decodable>(
            _ type: T.Type, _ method: HTTPRequest.Method, _ uri: String, json: String? = nil,
            sourceLocation: SourceLocation = #_sourceLocation
        ) async throws -> T {
            let (status, body) = try await send(method, uri, json: json)
            #expect((200..<300).contains(Int(status.code)), "\(method) \(uri): \(status) \(body)", sourceLocation: sourceLocation)
            return try JSONDecoder().decode(type, from: Data(body.utf8))
        }

        /// Sends and expects an error body with `status`, the stable `code` and a message
        /// containing `text`.
        func fails(
            _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, key: String? = nil, status: Int, code: String,
            containing text: String, sourceLocation: SourceLocation = #_sourceLocation
        ) async throws {
            let (got, body) = try await send(method, uri, json: json, key: key)
            #expect(Int(got.code) == status, "\(method) \(uri): \(body)", sourceLocation: sourceLocation)
            let error = try? JSONDecoder().decode(ErrorBody.self, from: Data(body.utf8))
            #expect(error?.statusCode == status, sourceLocation: sourceLocation)
            #expect(error?.code == code, "\(body)", sourceLocation: sourceLocation)
            #expect(error?.message.contains(text) == true, "\(body)", sourceLocation: sourceLocation)
            #expect(error?.path == String(uri.split(separator: "?").first ?? ""), sourceLocation: sourceLocation)
        }
    }

    /// A router over a fresh runner and an API key of organization `org` (admin when asked).
    func withAPI(
        admin: Bool = false, configure: (inout RuntimeConfiguration) -> Void = { _ in },
        _ body: @escaping @Sendable (Client, RunnerFixture) async throws -> Void
    ) async throws {
        try await withRunner(configure: configure) { f in
            let (key, _) = try f.manager.database.createKey(organizationId: "org", name: "test", admin: admin, at: 0)
            let router = try AtollServer.router(manager: f.manager, settings: ServerSettings(publicURL: "http://127.0.0.1:1"))
            try await Application(router: router).test(.router) { client in
                try await body(Client(client: client, key: key), f)
            }
        }
    }

    @Test("health needs no key; everything else needs a valid one (401 naming what is wrong)")
    func authentication() async throws {
        try await withAPI { api, _ in
            let (status, body) = try await api.send(.get, "/health", key: "")
            #expect(status == .ok && body.contains("\"status\":\"ok\""))
            try await api.fails(.get, "/api/sandbox", key: "", status: 401, code: "unauthenticated", containing: "missing Authorization header")
            try await api.fails(.get, "/api/sandbox", key: "nope", status: 401, code: "unauthenticated", containing: "invalid or revoked API key")
            try await api.fails(
                .post, "/toolbox/x/process/execute", json: "{}", key: "nope", status: 401, code: "unauthenticated",
                containing: "invalid or revoked")
            try await api.fails(.get, "/metrics", key: "", status: 401, code: "unauthenticated", containing: "Authorization")
        }
    }

    @Test("sandbox lifecycle: create, get, list with labels, stop, start, resize, labels, intervals, network, delete")
    func lifecycle() async throws {
        try await withAPI { api, f in
            let created = try await api.ok(
                SandboxDTO.self, .post, "/api/sandbox",
                json: #"{"name":"web","labels":{"team":"a"},"cpu":2,"networkAllowList":""}"#)
            #expect(created.state == "started")
            #expect(created.cpu == 2 && created.memory == 1 && created.disk == 3)
            #expect(created.networkBlockAll == false && created.networkAllowList == nil, "an empty allow list is open")
            #expect(created.toolboxProxyUrl == "http://localhost/toolbox", "the toolbox under the host the client used")
            #expect(try await api.ok(SandboxDTO.self, .get, "/api/sandbox/web").id == created.id, "by name")
            let list = try await api.ok(ListSandboxesResponse.self, .get, "/api/sandbox?labels=%7B%22team%22%3A%22a%22%7D")
            #expect(list.items.map(\.id) == [created.id])
            #expect(try await api.ok(ListSandboxesResponse.self, .get, "/api/sandbox?labels=%7B%22team%22%3A%22b%22%7D").items.isEmpty)
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/stop").state == "stopped")
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/resize", json: #"{"disk":5}"#).disk == 5)
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/start").state == "started")
            #expect(try await api.ok(LabelsBody.self, .put, "/api/sandbox/web/labels", json: #"{"labels":{"x":"y"}}"#).labels["x"] == "y")
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/autostop/0").autoStopInterval == 0)
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/autodelete/60").autoDeleteInterval == 60)
            let blocked = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/network-settings", json: #"{"networkBlockAll":true}"#)
            #expect(blocked.networkBlockAll == true)
            #expect(f.driver.calls("updateNetworkPolicy").last?.hasSuffix("block-all") == true, "the firewall was told")
            let (status, _) = try await api.send(.post, "/api/sandbox/web/last-activity")
            #expect(status == .created)
            #expect(try await api.ok(SandboxDTO.self, .delete, "/api/sandbox/web").state == "destroyed")
            try await api.fails(.get, "/api/sandbox/web", status: 404, code: "not_found", containing: "sandbox web not found")
        }
    }

    @Test("bad input is a 400 naming the field; unknown ids 404; state and name conflicts 409; limits")
    func errorClasses() async throws {
        try await withAPI { api, _ in
            try await api.fails(.post, "/api/sandbox", json: "{not json", status: 400, code: "invalid_argument", containing: "invalid")
            try await api.fails(.post, "/api/sandbox", json: #"{"cpu":"two"}"#, status: 400, code: "invalid_argument", containing: "cpu")
            try await api.fails(.post, "/api/sandbox", json: #"{"cpu":64}"#, status: 400, code: "invalid_argument", containing: "cpu")
            try await api.fails(
                .post, "/api/sandbox", json: #"{"networkAllowList":"10.0.0.0/33"}"#, status: 400, code: "invalid_argument",
                containing: "10.0.0.0/33")
            try await api.fails(
                .post, "/api/sandbox", json: #"{"networkBlockAll":true,"networkAllowList":"10.0.0.0/8"}"#, status: 400,
                code: "invalid_argument", containing: "choose one")
            try await api.fails(
                .post, "/api/sandbox", json: #"{"domainAllowList":"example.com"}"#, status: 400, code: "invalid_argument",
                containing: "domainAllowList")
            try await api.fails(.get, "/api/sandbox?limit=0", status: 400, code: "invalid_argument", containing: "limit")
            try await api.fails(.get, "/api/sandbox/nope", status: 404, code: "not_found", containing: "nope")
            try await api.fails(.post, "/api/sandbox/nope/start", status: 404, code: "not_found", containing: "nope")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"one","memory":2}"#)
            try await api.fails(.post, "/api/sandbox", json: #"{"name":"one"}"#, status: 409, code: "name_taken", containing: "\"one\" already exists")
            try await api.fails(.post, "/api/sandbox/one/resize", json: #"{"memory":1}"#, status: 409, code: "conflict", containing: "stop")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/one/stop")
            try await api.fails(.post, "/api/sandbox/one/recover", status: 409, code: "conflict", containing: "not in error")
            try await api.fails(.get, "/api/warm-pool", status: 403, code: "forbidden", containing: "administrator")
            let big = "{\"name\":\"" + String(repeating: "x", count: APILimits.jsonBody + 1) + "\"}"
            try await api.fails(.post, "/api/sandbox", json: big, status: 413, code: "payload_too_large", containing: "larger than")
        }
    }

    @Test("another organization's sandbox is not found, on /api and on /toolbox")
    func tenancy() async throws {
        try await withAPI { api, f in
            let (other, _) = try f.manager.database.createKey(organizationId: "other", name: "other", at: 0)
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"mine"}"#)
            try await api.fails(.get, "/api/sandbox/mine", key: other, status: 404, code: "not_found", containing: "mine")
            try await api.fails(
                .post, "/toolbox/mine/process/execute", json: #"{"command":"true"}"#, key: other, status: 404,
                code: "not_found", containing: "mine")
        }
    }

    @Test("toolbox: execute and code-run answer the command's output; an unknown sandbox is a 404, not exit code -1")
    func toolbox() async throws {
        try await withAPI { api, f in
            let sandbox = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: "{}")
            let result = try await api.ok(ExecuteResponse.self, .post, "/toolbox/\(sandbox.id)/process/execute", json: #"{"command":"echo ok"}"#)
            #expect(result.exitCode == 0 && result.result == "ok\n")
            #expect(f.driver.calls("exec").count == 1)
            _ = try await api.ok(CodeRunResponse.self, .post, "/toolbox/\(sandbox.id)/process/code-run", json: #"{"code":"print(1)"}"#)
            #expect(f.driver.calls("code").last?.hasSuffix("python") == true)
            try await api.fails(
                .post, "/toolbox/unknown/process/execute", json: #"{"command":"true"}"#, status: 404, code: "not_found",
                containing: "unknown")
            try await api.fails(
                .post, "/toolbox/\(sandbox.id)/process/execute", json: #"{"command":"true","timeout":-1}"#, status: 400,
                code: "invalid_argument", containing: "timeout")
            try await api.fails(
                .post, "/toolbox/\(sandbox.id)/process/code-run", json: #"{"code":"1","language":"cobol"}"#, status: 400,
                code: "invalid_argument", containing: "cobol")
            // The fake driver has no files: the failure keeps its class (503) and names why.
            try await api.fails(.get, "/toolbox/\(sandbox.id)/files?path=/", status: 503, code: "unavailable", containing: "no files")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/\(sandbox.id)/stop")
            try await api.fails(
                .post, "/toolbox/\(sandbox.id)/process/execute", json: #"{"command":"true"}"#, status: 409, code: "conflict",
                containing: "stopped")
        }
    }

    @Test("sessions: ids are checked, unknown sessions are 404, and a driver without files fails the create with its reason")
    func sessions() async throws {
        try await withAPI { api, _ in
            let id = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: "{}").id
            try await api.fails(
                .post, "/toolbox/\(id)/process/session", json: #"{"sessionId":"../x"}"#, status: 400, code: "invalid_argument",
                containing: "session")
            try await api.fails(
                .post, "/toolbox/\(id)/process/session", json: #"{"sessionId":"s1"}"#, status: 503, code: "unavailable",
                containing: "no files")
            try await api.fails(.get, "/toolbox/\(id)/process/session/nope", status: 404, code: "not_found", containing: "session nope")
            try await api.fails(
                .post, "/toolbox/\(id)/process/session/nope/exec", json: #"{"command":"true"}"#, status: 404, code: "not_found",
                containing: "session nope")
            let (listed, sessions) = try await api.send(.get, "/toolbox/\(id)/process/session")
            #expect(listed == .ok && sessions == "[]")
        }
    }

    @Test("usage and metrics answer for the caller's organization; the warm pool needs an administrator")
    func reports() async throws {
        try await withAPI(admin: true) { api, _ in
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"metered"}"#)
            let usage = try await api.ok(UsageResponse.self, .get, "/api/usage?groupBy=sandbox")
            #expect(usage.groupBy == "sandbox")
            try await api.fails(.get, "/api/usage?groupBy=planet", status: 400, code: "invalid_argument", containing: "planet")
            _ = try await api.ok([WarmPoolDTO].self, .get, "/api/warm-pool")
            let (status, text) = try await api.send(.get, "/metrics")
            #expect(status == .ok && text.contains("atoll_sandboxes"))
        }
    }
}
