import AtollCore
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import AtollWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import AtollAPI

/// Routes beyond the core on the fake driver: 501 for what is not served, preview links and the
/// proxy's refusals, env updates, list filters and sorting, forced and graceful stops. The parts
/// that need a real sandbox (proxying, git) are in Tests/sdk/test_surface.py.
extension RouteTests {
    @Test("unknown routes under /api and /toolbox are 501 naming the route; elsewhere 404")
    func notImplemented() async throws {
        try await withAPI { api, _ in
            try await api.fails(.post, "/api/sandbox/x/fork", json: "{}", status: 501, code: "not_implemented", containing: "POST /api/sandbox/x/fork")
            try await api.fails(.get, "/toolbox/x/lsp/completions", status: 501, code: "not_implemented", containing: "/toolbox/x/lsp/completions")
            let (status, _) = try await api.send(.get, "/nowhere")
            #expect(status == .notFound)
        }
    }

    @Test("preview links: URL and token, signed tokens per port, public flag, proxy refusals")
    func previews() async throws {
        // No sandbox network: fake sandboxes must have no address the proxy could connect to.
        try await withAPI(configure: { $0.driver.network = nil }) { api, _ in
            let sandbox = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"web"}"#)
            #expect(sandbox.public == false)
            struct Link: Decodable {
                var sandboxId, url, token: String
            }
            let link = try await api.ok(Link.self, .get, "/api/sandbox/web/ports/3000/preview-url")
            #expect(link.sandboxId == sandbox.id && link.url.hasPrefix("http://3000-\(sandbox.id).localhost"))
            #expect(link.token.count == 40)
            try await api.fails(.get, "/api/sandbox/web/ports/0/preview-url", status: 400, code: "invalid_argument", containing: "port")
            struct Signed: Decodable {
                var port: Int
                var token: String
            }
            let signed = try await api.ok(Signed.self, .get, "/api/sandbox/web/ports/3000/signed-preview-url?expiresInSeconds=30")
            #expect(signed.port == 3000 && signed.token != link.token)
            try await api.fails(
                .get, "/api/sandbox/web/ports/3000/signed-preview-url?expiresInSeconds=0", status: 400, code: "invalid_argument",
                containing: "expiresInSeconds")
            let (expired, _) = try await api.send(.post, "/api/sandbox/web/ports/3000/signed-preview-url/\(signed.token)/expire")
            #expect(expired == .ok)
            try await api.fails(
                .post, "/api/sandbox/web/ports/3001/signed-preview-url/\(signed.token)/expire", status: 404, code: "not_found",
                containing: "not a signed preview token of port 3001")

            // Path form through the router: no token is a 401; with one, a sandbox without an
            // address is a 503 saying so.
            let (noToken, page) = try await api.send(.get, "/preview/\(sandbox.id)/3000/", key: "")
            #expect(noToken == .unauthorized && page.contains("needs its token"))
            let (withToken, withTokenPage) = try await api.send(
                .get, "/preview/\(sandbox.id)/3000/?atoll-preview-token=\(link.token)", key: "")
            #expect(withToken == .serviceUnavailable && withTokenPage.contains("no network address"), "\(withTokenPage)")
            let (unknown, _) = try await api.send(.get, "/preview/nosuchsandbox/3000/", key: "")
            #expect(unknown == .notFound)

            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/public/true").public == true)
            let (open, _) = try await api.send(.get, "/preview/\(sandbox.id)/3000/", key: "")
            #expect(open == .serviceUnavailable, "public: no token needed")
            try await api.fails(.post, "/api/sandbox/web/public/maybe", status: 400, code: "invalid_argument", containing: "isPublic")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/web/stop")
            let (stopped, stoppedPage) = try await api.send(.get, "/preview/\(sandbox.id)/3000/", key: "")
            #expect(stopped == .serviceUnavailable && stoppedPage.contains("is stopped"))
        }
    }

    @Test("preview targets from the Host or the path; anything else is not a preview")
    func previewTargets() {
        let host = PreviewTarget.match(host: "8080-abc1.localhost:3986", uri: "/x?y=1", domain: "localhost")
        #expect(host == PreviewTarget(sandbox: try! SandboxID("abc1"), port: 8080, uri: "/x?y=1", cookiePath: "/"))
        let path = PreviewTarget.match(host: "127.0.0.1:3986", uri: "/preview/abc1/80/a/b?c", domain: "localhost")
        #expect(path?.port == 80 && path?.uri == "/a/b?c" && path?.cookiePath == "/preview/abc1/80")
        #expect(PreviewTarget.match(host: "127.0.0.1:3986", uri: "/preview/abc1/80", domain: "localhost")?.uri == "/")
        #expect(PreviewTarget.match(host: "localhost:3986", uri: "/api/sandbox", domain: "localhost") == nil)
        #expect(PreviewTarget.match(host: "70000-abc1.localhost", uri: "/", domain: "localhost") == nil, "port out of range")
        #expect(PreviewTarget.match(host: "80-ABC_1.localhost", uri: "/", domain: "localhost") == nil, "not a sandbox id")
        #expect(PreviewTarget.match(host: "80-abc1.example.com", uri: "/", domain: "localhost") == nil, "another domain")
        #expect(PreviewTarget.match(host: "[::1]:3986", uri: "/", domain: "localhost") == nil)
        #expect(PreviewProxy.takeToken(from: "/a?x=1&atoll-preview-token=t&y=2") == ("/a?x=1&y=2", "t"))
    }

    @Test("env updates apply to later processes; list filters, sorting and refusals")
    func envAndListFilters() async throws {
        try await withAPI { api, _ in
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"b","env":{"A":"1","B":"2"}}"#)
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"a","cpu":2}"#)
            let (status, body) = try await api.send(.post, "/toolbox/b/env", json: #"{"set":{"C":"3"},"unset":["A"]}"#)
            #expect(status == .ok && body == "{}")
            #expect(try await api.ok(SandboxDTO.self, .get, "/api/sandbox/b").env == ["B": "2", "C": "3"])
            try await api.fails(.post, "/toolbox/b/env", json: #"{"set":{"1X":"3"}}"#, status: 400, code: "invalid_argument", containing: "1X")
            func names(_ query: String) async throws -> [String] {
                try await api.ok(ListSandboxesResponse.self, .get, "/api/sandbox?\(query)").items.map(\.name)
            }
            #expect(try await names("") == ["b", "a"])
            #expect(try await names("sort=name") == ["a", "b"])
            #expect(try await names("sort=name&order=desc") == ["b", "a"])
            #expect(try await names("minCpu=2") == ["a"])
            #expect(try await names("maxCpu=1") == ["b"])
            #expect(try await names("isPublic=false&snapshots=default") == ["b", "a"])
            #expect(try await names("regionIds=eu") == [])
            #expect(try await names("createdAtBefore=2000-01-01T00:00:00Z") == [])
            try await api.fails(.get, "/api/sandbox?order=up", status: 400, code: "invalid_argument", containing: "order")
            try await api.fails(.get, "/api/sandbox?minCpu=x", status: 400, code: "invalid_argument", containing: "minCpu")
            try await api.fails(.get, "/api/sandbox?createdAtAfter=yesterday", status: 400, code: "invalid_argument", containing: "createdAtAfter")
            #expect(try await names("autoDestroyAtBefore=2999-01-01T00:00:00Z") == [], "no TTL: never destroyed")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/a/ttl/60")
            #expect(try await names("autoDestroyAtBefore=2999-01-01T00:00:00Z") == ["a"])
            #expect(try await names("autoDestroyAtAfter=2999-01-01T00:00:00Z") == [])
            for (field, value) in [("target", "\"eu\""), ("kvm", "true"), ("gpuType", "\"A100\"")] {
                try await api.fails(.post, "/api/sandbox", json: "{\"\(field)\":\(value)}", status: 400, code: "invalid_argument", containing: field)
            }
        }
    }

    @Test("stop is graceful (a grace period) unless forced")
    func stopGrace() async throws {
        try await withAPI { api, f in
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"s"}"#)
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/s/stop")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/s/start")
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/s/stop?force=true")
            #expect(f.driver.stopGraces.suffix(2) == [SandboxManager.stopGrace, 0])
        }
    }

    @Test("files/replace replaces bytes literally; git status porcelain v2 is parsed")
    func replaceAndGitStatus() {
        #expect(ToolboxRoutes.replacing(Array("aa".utf8), with: Array("b".utf8), in: Array("aaaxaa".utf8)) == Array("baxb".utf8))
        #expect(ToolboxRoutes.replacing(Array("q".utf8), with: [], in: [0xff, 0x71, 0x00]) == [0xff, 0x00])
        let output =
            "# branch.oid abc\0# branch.head main\0# branch.upstream origin/main\0# branch.ab +2 -1\0"
            + "1 M. N... 100644 100644 100644 a b src/x y.txt\0" + "2 R. N... 100644 100644 100644 a b R100 new.txt\0old.txt\0"
            + "? notes.md\0"
        let status = GitRoutes.parseStatus(Array(output.utf8))
        #expect(status.currentBranch == "main" && status.upstream == "origin/main" && status.ahead == 2 && status.behind == 1)
        #expect(status.fileStatus.map(\.name) == ["src/x y.txt", "new.txt", "notes.md"])
        #expect(status.fileStatus.map(\.staging) == ["Modified", "Renamed", "Untracked"])
        #expect(status.fileStatus[1].extra == "old.txt")
        #expect(GitRoutes.parseStatus(Array("# branch.head (detached)\0".utf8)).detached)
    }
}

extension RouteTests {
    @Test("pause freezes (paused, execs refused), start resumes, stop and delete work from paused; TTL and auto-pause")
    func pauseResumeTTL() async throws {
        try await withAPI { api, f in
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"p","autoPauseInterval":5,"ttlMinutes":30}"#)
            let created = try await api.ok(SandboxDTO.self, .get, "/api/sandbox/p")
            #expect(created.autoPauseInterval == 5 && created.autoDestroyAt != nil)
            let paused = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/p/pause")
            #expect(paused.state == "paused" && paused.desiredState == "paused")
            #expect(f.driver.calls("pause").count == 1)
            try await api.fails(
                .post, "/toolbox/p/process/execute", json: #"{"command":"true"}"#, status: 409, code: "conflict", containing: "paused")
            try await api.fails(.post, "/api/sandbox/p/archive", status: 409, code: "conflict", containing: "paused")
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/p/start").state == "started")
            #expect(f.driver.calls("resume").count == 1)
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox/p/pause")
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/p/stop").state == "stopped")
            #expect(f.driver.stopGraces.last == 0, "frozen processes cannot take SIGTERM: killed at once")
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/p/ttl/0").autoDestroyAt == nil)
            #expect(try await api.ok(SandboxDTO.self, .post, "/api/sandbox/p/autopause/0").autoPauseInterval == 0)
            try await api.fails(.post, "/api/sandbox/p/autopause/-1", status: 400, code: "invalid_argument", containing: "autoPauseInterval")
            try await api.fails(
                .post, "/api/sandbox", json: #"{"autoPauseInterval":5,"autoDeleteInterval":0}"#, status: 400, code: "invalid_argument",
                containing: "ephemeral")

            // The sweeper: auto-pause after 5 idle minutes (before auto-stop at 15), TTL deletes.
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"idle","autoPauseInterval":5}"#)
            _ = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: #"{"name":"short","ttlMinutes":1}"#)
            f.clock.advance(by: 6 * 60)
            let report = await f.manager.sweep()
            #expect(report.paused.count == 1)
            #expect(try await api.ok(SandboxDTO.self, .get, "/api/sandbox/idle").state == "paused")
            try await api.fails(.get, "/api/sandbox/short", status: 404, code: "not_found", containing: "short")
        }
    }
}
