import AtollCore
import AtollDaytona
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollWire
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
import AtollStore
#endif

/// A shell command or an argv for `exec`.
enum CommandLine {
    case shell(String)
    case argv([String])

    /// One shell command line (argv words quoted), for the API's `execute`, which takes a string.
    var shellText: String {
        switch self {
        case .shell(let text): return text
        case .argv(let words): return words.map(Self.quote).joined(separator: " ")
        }
    }

    static func quote(_ word: String) -> String {
        if !word.isEmpty && word.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// What an exec or code run ended with.
struct RunOutcome {
    var exitCode: Int32
    var timedOut: Bool
}

/// Where the CLI's commands go: a running atolld (over its HTTP API) or the runner embedded in
/// this process. Both speak in Daytona's wire types, so output looks the same either way.
protocol Backend: Sendable {
    /// "atolld at http://…" or "embedded (DATA_DIR)".
    var description: String { get }
    func create(_ body: CreateSandboxRequest) async throws -> SandboxDTO
    func list(labels: [String: String]) async throws -> [SandboxDTO]
    func get(_ id: String) async throws -> SandboxDTO
    func start(_ id: String) async throws -> SandboxDTO
    func stop(_ id: String, force: Bool) async throws -> SandboxDTO
    /// Archives and waits until the archive is done; `progress` sees the elapsed seconds.
    func archive(_ id: String, progress: @escaping @Sendable (Double) -> Void) async throws -> SandboxDTO
    func recover(_ id: String) async throws -> SandboxDTO
    func delete(_ id: String) async throws -> SandboxDTO
    func resize(_ id: String, cpu: Int?, memory: Int?, disk: Int?) async throws -> SandboxDTO
    func setLabels(_ id: String, _ labels: [String: String]) async throws -> [String: String]
    func setNetwork(_ id: String, _ settings: NetworkSettingsBody) async throws -> SandboxDTO
    func usage(sandboxId: String?, from: Date, to: Date, groupBy: String) async throws -> UsageResponse
    func warmPool() async throws -> [WarmPoolDTO]
    /// Runs a command; output goes to `onOutput` (as it comes when embedded, at the end remotely).
    func exec(
        _ id: String, _ command: CommandLine, cwd: String?, env: [String: String], user: String?, timeout: Double?,
        forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome
    func codeRun(
        _ id: String, language: Language?, code: String, arguments: [String], env: [String: String], timeout: Double?,
        forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome
    /// A process run live: output as it comes, stdin forwarded (with `forwardStdin`), a terminal
    /// when the request has a size.
    func execLive(
        _ id: String, _ request: LiveExecRequest, forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome
    func upload(_ id: String, _ data: Data, to path: String) async throws
    func download(_ id: String, _ path: String) async throws -> Data
    func createSnapshot(_ body: CreateSnapshotRequest) async throws -> SnapshotDTO
    /// A snapshot of a sandbox's filesystem as it is now.
    func snapshotSandbox(_ id: String, name: String) async throws -> SandboxDTO
    func snapshots() async throws -> [SnapshotDTO]
    func snapshot(_ idOrName: String) async throws -> SnapshotDTO
    func deleteSnapshot(_ idOrName: String) async throws
    /// Prints the snapshot's log from byte `offset`; returns the new offset.
    func printSnapshotLog(_ id: String, from offset: Int) async throws -> Int
    /// State history lines (embedded only; nil remotely).
    func history(_ id: String) async throws -> [String]?
    func close() async
}

// MARK: - Embedded

/// The runner in this process, on the data directory (needs root).
struct EmbeddedBackend: Backend {
    let manager: SandboxManager
    let dataDirectory: String

    var description: String { "embedded (\(dataDirectory))" }

    func dto(_ sandbox: Sandbox) -> SandboxDTO { SandboxDTO(sandbox, toolboxURL: "", version: AtollVersion.current) }

    func create(_ body: CreateSandboxRequest) async throws -> SandboxDTO {
        dto(try await manager.create(body, organizationId: nil))
    }

    func list(labels: [String: String]) async throws -> [SandboxDTO] { try await manager.list(labels: labels).map(dto) }
    func get(_ id: String) async throws -> SandboxDTO { dto(try await manager.get(id)) }
    func start(_ id: String) async throws -> SandboxDTO { dto(try await manager.start(id)) }
    func stop(_ id: String, force: Bool) async throws -> SandboxDTO { dto(try await manager.stop(id, force: force)) }

    func archive(_ id: String, progress: @escaping @Sendable (Double) -> Void) async throws -> SandboxDTO {
        _ = try await manager.archive(id)
        let start = Monotonic.now()
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                progress(Monotonic.now() - start)
            }
        }
        // Embedded, the archive runs in this process: finish it before exiting.
        try await manager.waitForBackgroundWork(id)
        ticker.cancel()
        return dto(try await manager.get(id))
    }

    func recover(_ id: String) async throws -> SandboxDTO { dto(try await manager.recover(id)) }
    func delete(_ id: String) async throws -> SandboxDTO { dto(try await manager.delete(id)) }

    func resize(_ id: String, cpu: Int?, memory: Int?, disk: Int?) async throws -> SandboxDTO {
        dto(try await manager.resize(id, cpu: cpu, memoryGiB: memory, diskGiB: disk))
    }

    func usage(sandboxId: String?, from: Date, to: Date, groupBy: String) async throws -> UsageResponse {
        UsageResponse(
            try await manager.usageReport(
                UsageQuery(
                    sandboxId: sandboxId, from: from, to: to, groupBy: try UsageGrouping(parsing: groupBy))))
    }

    func warmPool() async throws -> [WarmPoolDTO] {
        try await manager.warmPoolStatus().map(WarmPoolDTO.init)
    }

    func setNetwork(_ id: String, _ settings: NetworkSettingsBody) async throws -> SandboxDTO {
        dto(
            try await manager.updateNetworkSettings(
                id, blockAll: settings.networkBlockAll, allowList: settings.networkAllowList,
                domainAllowList: settings.domainAllowList))
    }

    func setLabels(_ id: String, _ labels: [String: String]) async throws -> [String: String] {
        try await manager.setLabels(id, labels).labels
    }

    func exec(
        _ id: String, _ command: CommandLine, cwd: String?, env: [String: String], user: String?, timeout: Double?,
        forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome {
        let request: ExecRequest
        switch command {
        case .shell(let text): request = ExecRequest(command: .shell(text), env: env, cwd: cwd, user: user, timeout: timeout)
        case .argv(let words):
            request = ExecRequest(
                command: .argv(words), env: env, cwd: cwd, user: user, timeout: timeout,
                stdin: forwardStdin ? .forward(STDIN_FILENO) : .none)
        }
        let result = try await manager.exec(id, request, onOutput: onOutput)
        return RunOutcome(exitCode: result.exitCode, timedOut: result.timedOut)
    }

    func codeRun(
        _ id: String, language: Language?, code: String, arguments: [String], env: [String: String], timeout: Double?,
        forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome {
        let sandbox = try await manager.get(id)
        let result = try await manager.runCode(
            id,
            CodeRequest(
                language: language ?? sandbox.language, code: code, arguments: arguments, env: env, timeout: timeout,
                stdin: forwardStdin ? .forward(STDIN_FILENO) : .none), onOutput: onOutput)
        return RunOutcome(exitCode: result.exitCode, timedOut: result.timedOut)
    }

    func upload(_ id: String, _ data: Data, to path: String) async throws {
        let files = try await manager.files(id)
        let bytes = [UInt8](data)
        _ = try await WorkPool.shared.run { try files.write(path, bytes: bytes) }
    }

    func download(_ id: String, _ path: String) async throws -> Data {
        let files = try await manager.files(id)
        return Data(try await WorkPool.shared.run { try files.read(path) })
    }

    func createSnapshot(_ body: CreateSnapshotRequest) async throws -> SnapshotDTO {
        SnapshotDTO(try manager.snapshots.create(try body.request(organizationId: nil)))
    }

    func snapshotSandbox(_ id: String, name: String) async throws -> SandboxDTO {
        dto(try await manager.createSnapshot(fromSandbox: id, name: name))
    }

    func snapshots() async throws -> [SnapshotDTO] {
        try manager.snapshots.list(organizationId: nil, page: 1, limit: 200).items.map(SnapshotDTO.init)
    }

    func snapshot(_ idOrName: String) async throws -> SnapshotDTO { SnapshotDTO(try manager.snapshots.get(idOrName, organizationId: nil)) }

    func deleteSnapshot(_ idOrName: String) async throws { try manager.snapshots.delete(idOrName, organizationId: nil) }

    func printSnapshotLog(_ id: String, from offset: Int) async throws -> Int {
        guard let data = FileManager.default.contents(atPath: manager.snapshots.logPath(id)), data.count > offset else { return offset }
        FileHandle.standardOutput.write(data[offset...])
        return data.count
    }

    func history(_ id: String) async throws -> [String]? {
        let iso = ISO8601DateFormatter()
        return try await manager.history(id).map {
            "\(iso.string(from: Date(timeIntervalSince1970: $0.at)))  \($0.fromState ?? "-") -> \($0.toState)  \($0.reason ?? "")"
        }
    }

    func close() async { await manager.close() }
}

// MARK: - Remote

/// A running atolld, over its HTTP API with a bearer key.
struct RemoteBackend: Backend {
    let baseURL: String
    let apiKey: String

    var description: String { "atolld at \(baseURL)" }

    struct Failure: Error {}

    /// One request; a non-2xx answer becomes the `AtollError` the server described.
    func send(
        _ method: String, _ path: String, json: (any Encodable)? = nil, body: Data? = nil, contentType: String? = nil,
        timeout: Double = 120
    ) async throws -> (Data, HTTPURLResponse) {
        guard let url = URL(string: baseURL + path) else { throw AtollError(.invalidArgument, "invalid URL \(baseURL + path)") }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
        if let json {
            request.httpBody = try JSONEncoder().encode(json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw AtollError(.unavailable, "cannot reach atolld at \(baseURL): \(error.localizedDescription)")
        }
        guard let http = response as? HTTPURLResponse else { throw AtollError(.internal, "no HTTP response from \(baseURL)") }
        guard (200..<300).contains(http.statusCode) else {
            let body = try? JSONDecoder().decode(ErrorBody.self, from: data)
            let message = body?.message ?? String(decoding: data.prefix(500), as: UTF8.self)
            throw AtollError(Self.code(forStatus: http.statusCode), message)
        }
        return (data, http)
    }

    static func code(forStatus status: Int) -> AtollError.Code {
        AtollError.Code.all.first { $0.httpStatus == status } ?? (status >= 500 ? .internal : .invalidArgument)
    }

    func decode<T: Decodable>(_ type: T.Type, _ method: String, _ path: String, json: (any Encodable)? = nil, timeout: Double = 120) async throws -> T {
        let (data, _) = try await send(method, path, json: json, timeout: timeout)
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw AtollError(.internal, "unexpected answer from atolld to \(method) \(path)", cause: error)
        }
    }

    static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s
    }
    static func query(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s }

    func sandbox(_ id: String) -> String { "/api/sandbox/\(Self.escape(id))" }

    func create(_ body: CreateSandboxRequest) async throws -> SandboxDTO {
        try await decode(SandboxDTO.self, "POST", "/api/sandbox", json: body, timeout: 600)
    }

    func list(labels: [String: String]) async throws -> [SandboxDTO] {
        var items: [SandboxDTO] = []
        var cursor: String?
        repeat {
            var path = "/api/sandbox?limit=200"
            if !labels.isEmpty { path += "&labels=" + Self.query(String(decoding: try JSONEncoder().encode(labels), as: UTF8.self)) }
            if let cursor { path += "&cursor=" + Self.query(cursor) }
            let page = try await decode(ListSandboxesResponse.self, "GET", path)
            items += page.items
            cursor = page.nextCursor
        } while cursor != nil && cursor != ""
        return items
    }

    func get(_ id: String) async throws -> SandboxDTO { try await decode(SandboxDTO.self, "GET", sandbox(id)) }

    func createSnapshot(_ body: CreateSnapshotRequest) async throws -> SnapshotDTO {
        try await decode(SnapshotDTO.self, "POST", "/api/snapshots", json: body)
    }

    func snapshotSandbox(_ id: String, name: String) async throws -> SandboxDTO {
        struct Body: Encodable { var name: String }
        return try await decode(SandboxDTO.self, "POST", sandbox(id) + "/snapshot", json: Body(name: name), timeout: 3600)
    }

    func snapshots() async throws -> [SnapshotDTO] { try await decode(PaginatedSnapshots.self, "GET", "/api/snapshots?limit=200").items }

    func snapshot(_ idOrName: String) async throws -> SnapshotDTO {
        try await decode(SnapshotDTO.self, "GET", "/api/snapshots/\(Self.escape(idOrName))")
    }

    func deleteSnapshot(_ idOrName: String) async throws { _ = try await send("DELETE", "/api/snapshots/\(Self.escape(idOrName))") }

    func printSnapshotLog(_ id: String, from offset: Int) async throws -> Int {
        let (data, _) = try await send("GET", "/api/snapshots/\(Self.escape(id))/build-logs")
        guard data.count > offset else { return offset }
        FileHandle.standardOutput.write(data[offset...])
        return data.count
    }
    func start(_ id: String) async throws -> SandboxDTO { try await decode(SandboxDTO.self, "POST", sandbox(id) + "/start", timeout: 3600) }
    func stop(_ id: String, force: Bool) async throws -> SandboxDTO {
        try await decode(SandboxDTO.self, "POST", sandbox(id) + "/stop?force=\(force)", timeout: 600)
    }
    func recover(_ id: String) async throws -> SandboxDTO { try await decode(SandboxDTO.self, "POST", sandbox(id) + "/recover", timeout: 3600) }
    func delete(_ id: String) async throws -> SandboxDTO { try await decode(SandboxDTO.self, "DELETE", sandbox(id), timeout: 600) }

    func archive(_ id: String, progress: @escaping @Sendable (Double) -> Void) async throws -> SandboxDTO {
        var current = try await decode(SandboxDTO.self, "POST", sandbox(id) + "/archive")
        let start = Monotonic.now()
        while current.state == "archiving" {
            try await Task.sleep(for: .milliseconds(250))
            progress(Monotonic.now() - start)
            current = try await get(id)
        }
        return current
    }

    func resize(_ id: String, cpu: Int?, memory: Int?, disk: Int?) async throws -> SandboxDTO {
        try await decode(SandboxDTO.self, "POST", sandbox(id) + "/resize", json: ResizeBody(cpu: cpu, memory: memory, disk: disk), timeout: 600)
    }

    func usage(sandboxId: String?, from: Date, to: Date, groupBy: String) async throws -> UsageResponse {
        var query = "from=\(from.timeIntervalSince1970)&to=\(to.timeIntervalSince1970)&groupBy=\(Self.query(groupBy))"
        if let sandboxId { query += "&sandboxId=\(Self.query(sandboxId))" }
        return try await decode(UsageResponse.self, "GET", "/api/usage?\(query)")
    }

    func warmPool() async throws -> [WarmPoolDTO] {
        try await decode([WarmPoolDTO].self, "GET", "/api/warm-pool")
    }

    func setNetwork(_ id: String, _ settings: NetworkSettingsBody) async throws -> SandboxDTO {
        try await decode(SandboxDTO.self, "POST", sandbox(id) + "/network-settings", json: settings)
    }

    func setLabels(_ id: String, _ labels: [String: String]) async throws -> [String: String] {
        try await decode(LabelsBody.self, "PUT", sandbox(id) + "/labels", json: LabelsBody(labels: labels)).labels
    }

    func toolbox(_ id: String) -> String { "/toolbox/\(Self.escape(id))" }

    func exec(
        _ id: String, _ command: CommandLine, cwd: String?, env: [String: String], user: String?, timeout: Double?,
        forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome {
        if user != nil {
            throw AtollError(.invalidArgument, "--user is not available through atolld (the API runs as the sandbox's user); use --embedded as root")
        }
        var request = LiveExecRequest(env: env, cwd: cwd, timeout: timeout)
        switch command {
        case .shell(let text): request.command = text
        case .argv(let words): request.argv = words
        }
        return try await execLive(id, request, forwardStdin: forwardStdin, onOutput: onOutput)
    }

    func codeRun(
        _ id: String, language: Language?, code: String, arguments: [String], env: [String: String], timeout: Double?,
        forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome {
        let request = LiveExecRequest(code: code, language: language?.rawValue, arguments: arguments, env: env, timeout: timeout)
        return try await execLive(id, request, forwardStdin: forwardStdin, onOutput: onOutput)
    }

    func upload(_ id: String, _ data: Data, to path: String) async throws {
        var writer = Multipart.Writer()
        writer.addField(name: "files[0].path", value: path)
        writer.add(name: "files[0].file", filename: path, contentType: "application/octet-stream", data: data)
        let body = writer.finish()
        _ = try await send("POST", toolbox(id) + "/files/bulk-upload", body: body, contentType: writer.contentType, timeout: 3600)
    }

    func download(_ id: String, _ path: String) async throws -> Data {
        let (data, response) = try await send("POST", toolbox(id) + "/files/bulk-download", json: ["paths": [path]], timeout: 3600)
        let parts: [Multipart.Part]
        do {
            parts = try Multipart.parse(data, boundary: try Multipart.boundary(contentType: response.value(forHTTPHeaderField: "Content-Type")))
        } catch {
            throw AtollError(.internal, "unexpected download answer from atolld: \(error.message)")
        }
        guard let part = parts.first(where: { $0.filename == path }) else { throw AtollError(.internal, "atolld sent no part for \(path)") }
        if part.name == "error" {
            let body = try? JSONDecoder().decode(ErrorBody.self, from: part.body)
            throw AtollError(Self.code(forStatus: body?.statusCode ?? 500), body?.message ?? "download failed")
        }
        return part.body
    }

    func history(_ id: String) async throws -> [String]? { nil }

    func close() async {}
}

// MARK: - Choosing one

extension RuntimeOptions {
    /// The daemon when one is reachable (explicit URL, or the data directory's `atolld.url`
    /// answering), the embedded runner otherwise (or with `--embedded`).
    func backend() async throws -> any Backend {
        let environment = ProcessInfo.processInfo.environment
        if !embedded {
            if let url = (self.url ?? environment["ATOLL_URL"]).map({ $0.hasSuffix("/") ? String($0.dropLast()) : $0 }) {
                return RemoteBackend(baseURL: url.hasSuffix("/api") ? String(url.dropLast(4)) : url, apiKey: try key(environment))
            }
            if let local = try? String(contentsOfFile: "\(dataDir)/atolld.url", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                !local.isEmpty, await Self.reachable(local)
            {
                return RemoteBackend(baseURL: local, apiKey: try key(environment))
            }
        }
        return EmbeddedBackend(manager: try await open(), dataDirectory: dataDir)
    }

    func key(_ environment: [String: String]) throws -> String {
        if let apiKeyFile { return try SecretScrubbing.readKey(file: apiKeyFile) }
        if let key = environment["ATOLL_API_KEY"], !key.isEmpty { return key }
        if let key = try? String(contentsOfFile: "\(dataDir)/api-key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !key.isEmpty {
            return key
        }
        throw AtollError(.unauthenticated, "no API key: pass --api-key-file, set ATOLL_API_KEY, or run as a user who can read \(dataDir)/api-key")
    }

    static func reachable(_ base: String) async -> Bool {
        guard let url = URL(string: base + "/health") else { return false }
        let request = URLRequest(url: url, timeoutInterval: 1)
        guard let (_, response) = try? await URLSession.shared.data(for: request) else { return false }
        return (response as? HTTPURLResponse)?.statusCode == 200
    }
}
