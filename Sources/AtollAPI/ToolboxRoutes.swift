import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollWire
import Foundation
import Hummingbird
import NIOCore

/// An error with the code Daytona's toolbox daemon would send: with `source: DAYTONA_DAEMON` the
/// SDK raises its specific exception (`DaytonaFileNotFoundError`,
/// `DaytonaProcessExecutionTimeoutError`, ...).
struct ToolboxError: Error {
    var error: AtollError
    var daemonCode: String
}

/// Daytona's toolbox under `/toolbox/{sandboxId}/…`: processes, code, sessions and files. Every
/// call counts as activity of the sandbox. File paths are resolved inside the sandbox root
/// (`SandboxFiles`); relative ones start at the sandbox user's home.
struct ToolboxRoutes {
    let manager: SandboxManager
    let sessions: Sessions
    let redact: HostPathRedaction

    func register(_ toolbox: RouterGroup<AtollContext>) {
        toolbox.post(":id/process/execute", use: execute)
        toolbox.post(":id/process/code-run", use: codeRun)
        toolbox.post(":id/process/session", use: createSession)
        toolbox.get(":id/process/session", use: listSessions)
        toolbox.get(":id/process/session/entrypoint", use: entrypointSession)
        toolbox.get(":id/process/session/entrypoint/logs", use: entrypointLogs)
        toolbox.get(":id/process/session/:session", use: getSession)
        toolbox.delete(":id/process/session/:session", use: deleteSession)
        toolbox.post(":id/process/session/:session/exec", use: sessionExec)
        toolbox.get(":id/process/session/:session/command/:command", use: sessionCommand)
        toolbox.get(":id/process/session/:session/command/:command/logs", use: sessionLogs)
        toolbox.get(":id/files", use: listFiles)
        toolbox.delete(":id/files", use: deleteFile)
        toolbox.get(":id/files/info", use: fileInfo)
        toolbox.post(":id/files/folder", use: createFolder)
        toolbox.post(":id/files/move", use: moveFile)
        toolbox.post(":id/files/permissions", use: setPermissions)
        toolbox.get(":id/files/find", use: findInFiles)
        toolbox.get(":id/files/search", use: searchFiles)
        toolbox.post(":id/files/bulk-upload", use: bulkUpload)
        toolbox.post(":id/files/bulk-download", use: bulkDownload)
        toolbox.post(":id/files/upload", use: upload)
        toolbox.post(":id/files/upload-v2", use: upload)  // the target of Daytona's upload_url
        toolbox.get(":id/files/download", use: download)
        toolbox.get(":id/user-home-dir") { _, context in try await directory(context) }
        toolbox.get(":id/work-dir") { _, context in try await directory(context) }
        toolbox.get(":id/version") { _, _ in try JSON.response(["version": AtollVersion.current]) }
        toolbox.post(":id/files/replace", use: replaceInFiles)
        toolbox.post(":id/env", use: updateEnv)
        toolbox.get(":id/system/metrics", use: systemMetrics)
    }

    func sandbox(_ context: AtollContext) throws -> (String, String) {
        (try context.parameters.require("id"), try context.organization())
    }

    // MARK: - Processes

    static func timeout(_ seconds: Int?) throws -> Double? {
        guard let seconds, seconds != 0 else { return nil }
        guard seconds > 0 && seconds <= 86400 else { throw AtollError(.invalidArgument, "timeout must be between 1 and 86400 seconds, got \(seconds)") }
        return Double(seconds)
    }

    /// Like Daytona's daemon: the command goes to a shell on stdin, stdout and stderr are merged
    /// in `result`, a non-zero exit is still 200, a timeout kills the process group and is a 408,
    /// and a process that cannot start is exit code -1 with the reason.
    @Sendable func execute(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(ExecuteBody.self, from: request, context: context)
        let (id, org) = try sandbox(context)
        let timeout = try Self.timeout(body.timeout)
        let result: ExecResult
        do {
            result = try await manager.toolboxGate.run(organization: org) {
                try await manager.exec(
                    id,
                    ExecRequest(
                        command: .shell(body.command), env: body.envs ?? [:], cwd: body.cwd,
                        timeout: timeout, mergeOutput: true), organizationId: org)
            }
        } catch let error as AtollError where error.cause is ProcessStartFailure {
            return try JSON.response(ExecuteResponse(exitCode: -1, result: redact(error.description)))
        }
        if result.timedOut {
            throw ToolboxError(error: AtollError(.timeout, "command execution timed out after \(Int(timeout ?? 0)) s"), daemonCode: "PROCESS_EXECUTION_TIMEOUT")
        }
        return try JSON.response(ExecuteResponse(exitCode: result.exitCode, result: result.stdoutText))
    }

    /// Runs code with the interpreter the server chooses for the language (the body's, else the
    /// sandbox's `code-toolbox-language` label): resolved paths inside the snapshot.
    @Sendable func codeRun(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(CodeRunBody.self, from: request, context: context)
        let (id, org) = try sandbox(context)
        let sandbox = try await manager.get(id, organizationId: org)
        let language = try body.language.map { try Language(parsing: $0) } ?? sandbox.language
        try EnvironmentValidation.validate(body.envs ?? [:], field: "envs")
        let timeout = try Self.timeout(body.timeout)
        let result = try await manager.toolboxGate.run(organization: org) {
            try await manager.runCode(
                id,
                CodeRequest(
                    language: language, code: body.code, arguments: body.argv ?? [], env: body.envs ?? [:], timeout: timeout,
                    mergeOutput: true), organizationId: org)
        }
        if result.timedOut {
            throw ToolboxError(error: AtollError(.timeout, "code execution timed out after \(Int(timeout ?? 0)) s"), daemonCode: "PROCESS_EXECUTION_TIMEOUT")
        }
        return try JSON.response(CodeRunResponse(exitCode: result.exitCode, result: result.stdoutText))
    }

    // MARK: - Sessions

    struct CreateSessionBody: Decodable { var sessionId: String }

    struct SessionDTO: Encodable {
        struct Command: Encodable {
            var id: String
            var command: String
            var exitCode: Int32?
        }
        var sessionId: String
        var commands: [Command]

        init(_ s: Session) {
            sessionId = s.id
            commands = s.commands.map { Command(id: $0.id, command: $0.command, exitCode: $0.exitCode) }
        }
    }

    @Sendable func createSession(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(CreateSessionBody.self, from: request, context: context)
        let (id, org) = try sandbox(context)
        try await manager.toolboxGate.run(organization: org) {
            try await sessions.create(id, sessionId: body.sessionId, organizationId: org)
        }
        return JSON.empty(.created)
    }

    @Sendable func listSessions(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        return try JSON.response(try await sessions.list(id, organizationId: org).map(SessionDTO.init))
    }

    @Sendable func getSession(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let session = try await sessions.get(id, sessionId: try context.parameters.require("session"), organizationId: org)
        return try JSON.response(SessionDTO(session))
    }

    @Sendable func deleteSession(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        try await sessions.delete(id, sessionId: try context.parameters.require("session"), organizationId: org)
        return JSON.empty()
    }

    struct SessionExecBody: Decodable {
        var command: String
        var runAsync: Bool?
        var async: Bool?
        var suppressInputEcho: Bool?
    }

    struct SessionExecResponse: Encodable {
        var cmdId: String
        var output: String?
        var stdout: String?
        var stderr: String?
        var exitCode: Int32?
    }

    /// Sync: 200 with the exit code and output; async (`runAsync`, or the older `async`): 202
    /// with the command id.
    @Sendable func sessionExec(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(SessionExecBody.self, from: request, context: context)
        let (id, org) = try sandbox(context)
        let runAsync = body.runAsync ?? body.async ?? false
        let session = try context.parameters.require("session")
        let (command, logs) = try await manager.toolboxGate.run(organization: org) {
            try await sessions.execute(id, sessionId: session, command: body.command, async: runAsync, organizationId: org)
        }
        if runAsync { return try JSON.response(SessionExecResponse(cmdId: command.id), status: .accepted) }
        return try JSON.response(
            SessionExecResponse(
                cmdId: command.id, output: logs?.output, stdout: logs?.stdout,
                stderr: logs?.stderr, exitCode: command.exitCode))
    }

    @Sendable func sessionCommand(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let command = try await sessions.command(
            id, sessionId: try context.parameters.require("session"),
            commandId: try context.parameters.require("command"), organizationId: org)
        return try JSON.response(SessionDTO.Command(id: command.id, command: command.command, exitCode: command.exitCode))
    }

    @Sendable func sessionLogs(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        try Self.refuseFollow(request)
        let logs = try await sessions.logs(
            id, sessionId: try context.parameters.require("session"),
            commandId: try context.parameters.require("command"), organizationId: org)
        return try JSON.response(["output": logs.output, "stdout": logs.stdout, "stderr": logs.stderr])
    }

    /// Following logs (follow=true) is a WebSocket (`ToolboxSockets`); a plain request for it is
    /// told so.
    static func refuseFollow(_ request: Request) throws {
        if try request.boolQuery("follow") == true {
            throw AtollError(
                .invalidArgument, "following logs (follow=true) is a WebSocket: send the request with an Upgrade: websocket header, or poll without follow")
        }
    }

    /// Daytona's entrypoint session runs an image's entrypoint. Atoll's snapshots have none (PID 1
    /// is Atoll's own init, which runs nothing of the sandbox's), so the session exists and is
    /// empty, and its logs are empty: the truth, not a missing route.
    @Sendable func entrypointSession(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        _ = try await manager.files(id, organizationId: org)  // a started sandbox of the caller's
        return try JSON.response(SessionDTO(Session(id: "entrypoint", commands: [])))
    }

    @Sendable func entrypointLogs(_ request: Request, context: AtollContext) async throws -> Response {
        try Self.refuseFollow(request)
        let (id, org) = try sandbox(context)
        _ = try await manager.files(id, organizationId: org)
        return try JSON.response(["output": "", "stdout": "", "stderr": ""])
    }

    // MARK: - Files

    /// Runs a file operation with the sandbox's files on the work pool (the agent's answers are
    /// waited for there, never on Swift's cooperative threads), within the organization's share
    /// of concurrent operations; errors get the daemon's codes.
    func withFiles<T: Sendable>(_ context: AtollContext, _ body: @escaping @Sendable (SandboxFiles) throws -> T) async throws -> T {
        let (id, org) = try sandbox(context)
        let files = try await manager.files(id, organizationId: org)
        do {
            return try await manager.toolboxGate.run(organization: org) {
                try await WorkPool.shared.run { try body(files) }
            }
        } catch let error as AtollError {
            throw Self.fileError(error)
        }
    }

    static func fileError(_ error: AtollError) -> any Error {
        switch error.code {
        case .notFound: return ToolboxError(error: error, daemonCode: "FILE_NOT_FOUND")
        case .forbidden: return ToolboxError(error: error, daemonCode: "FILE_ACCESS_DENIED")
        case .invalidArgument: return ToolboxError(error: error, daemonCode: "INVALID_FILE_PATH")
        default: return error
        }
    }

    struct FileInfoDTO: Encodable {
        var name: String
        var size: Int64
        var mode: String
        var modTime: String
        var modifiedAt: String
        var isDir: Bool
        var owner: String
        var group: String
        var permissions: String
        var path: String

        nonisolated(unsafe) static let nano: ISO8601DateFormatter = {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f
        }()

        init(_ e: FileEntry) {
            name = e.name
            size = Int64(e.size)
            mode = Self.goMode(e.mode)
            modTime = Self.nano.string(from: e.modified)
            modifiedAt = modTime
            isDir = e.isDirectory
            owner = String(e.uid)
            group = String(e.gid)
            permissions = e.permissions
            path = e.path
        }

        /// Go's `FileMode.String()`, which Daytona's daemon sends: type and special letters
        /// (d, L, D, c, p, S, u, g, t) then nine permission characters.
        static func goMode(_ mode: UInt32) -> String {
            var s = ""
            switch mode & 0o170000 {
            case 0o040000: s += "d"
            case 0o120000: s += "L"
            case 0o060000: s += "D"
            case 0o020000: s += "Dc"
            case 0o010000: s += "p"
            case 0o140000: s += "S"
            default: break
            }
            if mode & 0o4000 != 0 { s += "u" }
            if mode & 0o2000 != 0 { s += "g" }
            if mode & 0o1000 != 0 { s += "t" }
            if s.isEmpty { s = "-" }
            for (i, c) in "rwxrwxrwx".enumerated() { s.append(mode & (1 << (8 - UInt32(i))) != 0 ? c : "-") }
            return s
        }
    }

    @Sendable func listFiles(_ request: Request, context: AtollContext) async throws -> Response {
        let path = request.query("path") ?? "."
        let depth = try SandboxRoutes.integerQuery(request, "depth", default: 1, range: 1...32)
        let entries = try await withFiles(context) { files -> [FileEntry] in
            var result = try files.list(path).items
            var frontier = result.filter(\.isDirectory)
            for _ in 1..<depth {
                var next: [FileEntry] = []
                for dir in frontier {
                    let children = (try? files.list(dir.path).items) ?? []
                    result += children
                    next += children.filter(\.isDirectory)
                }
                frontier = next
            }
            return result
        }
        return try JSON.response(entries.map(FileInfoDTO.init))
    }

    @Sendable func fileInfo(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        return try JSON.response(FileInfoDTO(try await withFiles(context) { try $0.info(path) }))
    }

    @Sendable func createFolder(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let modeText = request.query("mode") ?? "755"
        guard let mode = UInt32(modeText, radix: 8), mode <= 0o7777 else {
            throw ToolboxError(
                error: AtollError(.invalidArgument, "mode must be octal permissions such as 755, got \"\(modeText.prefix(16))\""),
                daemonCode: "INVALID_FILE_PATH")
        }
        _ = try await withFiles(context) { try $0.createDirectory(path, mode: mode_t(mode)) }
        return JSON.empty(.created)
    }

    @Sendable func deleteFile(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let recursive = try request.boolQuery("recursive") ?? false
        try await withFiles(context) { try $0.delete(path, recursive: recursive) }
        return JSON.empty()
    }

    @Sendable func moveFile(_ request: Request, context: AtollContext) async throws -> Response {
        let source = try request.requireQuery("source")
        let destination = try request.requireQuery("destination")
        try await withFiles(context) { try $0.move(source, to: destination) }
        return JSON.empty(.ok)
    }

    @Sendable func setPermissions(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let (mode, owner, group) = (request.query("mode"), request.query("owner"), request.query("group"))
        _ = try await withFiles(context) { try $0.setPermissions(path, mode: mode, owner: owner, group: group) }
        return JSON.empty(.ok)
    }

    /// Paths as the caller named the directory: relative in, relative out.
    static func present(_ path: String, requested: String, home: String) -> String {
        guard !requested.hasPrefix("/") else { return path }
        return path.hasPrefix(home + "/") ? String(path.dropFirst(home.count + 1)) : path
    }

    struct MatchDTO: Encodable {
        var file: String
        var line: Int
        var content: String
    }

    @Sendable func findInFiles(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let pattern = try request.requireQuery("pattern")
        let matches = try await withFiles(context) { files in
            let found = try files.find(path, pattern: pattern)
            return found.items.map { MatchDTO(file: Self.present($0.file, requested: path, home: found.home), line: $0.line, content: $0.content) }
        }
        return try JSON.response(matches)
    }

    @Sendable func searchFiles(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let pattern = try request.requireQuery("pattern")
        let found = try await withFiles(context) { files in
            let listing = try files.search(path, pattern: pattern)
            return listing.items.map { Self.present($0, requested: path, home: listing.home) }
        }
        return try JSON.response(["files": found])
    }

    @Sendable func directory(_ context: AtollContext) async throws -> Response {
        let home = try await withFiles(context) { try $0.home() }
        return try JSON.response(["dir": home])
    }

    struct ReplaceBody: Decodable {
        var files: [String]
        var pattern: String
        var newValue: String
    }

    struct ReplaceResult: Encodable {
        var file: String
        var success: Bool
        var error: String?
    }

    /// Largest file `files/replace` edits.
    static let replaceLimit = 64 << 20

    /// Daytona's `replace_in_files`: every occurrence of `pattern` (literal text, as Daytona's
    /// daemon matches it) becomes `newValue`, file by file, each read and written back as the
    /// sandbox's user (the new content replaces the old in one rename; the mode is kept). A file
    /// that cannot be changed is a result with its error, not a failure of the whole call.
    @Sendable func replaceInFiles(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(ReplaceBody.self, from: request, context: context)
        guard !body.pattern.isEmpty else { throw AtollError(.invalidArgument, "pattern is empty") }
        guard body.files.count <= 10000 else { throw AtollError(.invalidArgument, "at most 10000 files per call, got \(body.files.count)") }
        let redact = self.redact
        let results = try await withFiles(context) { files in
            body.files.map { path -> ReplaceResult in
                do {
                    let info = try files.info(path)
                    guard !info.isDirectory else { throw AtollError(.invalidArgument, "\(path) is a directory") }
                    let old = try files.read(path, limit: Self.replaceLimit)
                    let new = Self.replacing(Array(body.pattern.utf8), with: Array(body.newValue.utf8), in: old)
                    if new != old { try files.write(path, bytes: new, mode: mode_t(info.mode & 0o7777)) }
                    return ReplaceResult(file: path, success: true)
                } catch {
                    return ReplaceResult(file: path, success: false, error: redact((error as? AtollError)?.description ?? "\(error)"))
                }
            }
        }
        return try JSON.response(results)
    }

    /// `bytes` with every non-overlapping occurrence of `pattern` replaced, left to right (bytes,
    /// so a file that is not UTF-8 keeps its other bytes exactly).
    static func replacing(_ pattern: [UInt8], with replacement: [UInt8], in bytes: [UInt8]) -> [UInt8] {
        guard !pattern.isEmpty, bytes.count >= pattern.count else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == pattern[0], i + pattern.count <= bytes.count, bytes[i..<(i + pattern.count)].elementsEqual(pattern) {
                out += replacement
                i += pattern.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    struct EnvBody: Decodable {
        var set: [String: String]?
        var unset: [String]?
    }

    /// Daytona's `update_env`: the environment of processes started from now on.
    @Sendable func updateEnv(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(EnvBody.self, from: request, context: context)
        let (id, org) = try sandbox(context)
        _ = try await manager.updateEnv(id, set: body.set ?? [:], unset: body.unset ?? [], organizationId: org)
        return try JSON.response([String: String]())  // the SDK parses an object
    }

    struct SystemMetrics: Encodable {
        var cpuCount: Int
        var cpuUsedPct: Double
        var memTotal: UInt64
        var memUsed: UInt64
        var memCache: UInt64?
        var diskTotal: UInt64
        var diskUsed: UInt64
        var timestamp: String
    }

    /// Daytona's `get_metrics_latest`, from the sandbox's cgroup: CPU use over the last 200 ms as
    /// a share of its vCPUs, memory charged against its limit, its disk's allocated bytes.
    @Sendable func systemMetrics(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let sandbox = try await manager.get(id, organizationId: org)
        let before = try await manager.usage(id, organizationId: org)
        let start = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(200))
        let after = try await manager.usage(id, organizationId: org)
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let busy = Double(after.cpuNanoseconds &- before.cpuNanoseconds) / 1e9
        let share = min(100, max(0, busy / seconds / Double(sandbox.resources.cpu) * 100))
        return try JSON.response(
            SystemMetrics(
                cpuCount: sandbox.resources.cpu, cpuUsedPct: (share * 10).rounded() / 10,
                memTotal: UInt64(sandbox.resources.memoryGiB) << 30, memUsed: after.memoryBytes, memCache: nil,
                diskTotal: UInt64(sandbox.resources.diskGiB) << 30, diskUsed: await manager.diskBytes(sandbox.id),
                timestamp: ISO8601DateFormatter().string(from: Date())))
    }

    // MARK: - Transfers

    /// `files[i].path` text fields name where `files[i].file` goes (relative to the home). The
    /// body is parsed as it arrives and every file streams into the sandbox through its agent, so
    /// at most a chunk of it is in the daemon's memory at any time.
    @Sendable func bulkUpload(_ request: Request, context: AtollContext) async throws -> Response {
        do {
            let (id, org) = try sandbox(context)
            let files = try await manager.files(id, organizationId: org)
            let written = try await manager.toolboxGate.run(organization: org) {
                try await Self.receiveUploads(request, files: files) { name, filename, destinations in
                    guard name.hasPrefix("files["), let close = name.firstIndex(of: "]") else { return .ignore }
                    let index = String(name[name.index(name.startIndex, offsetBy: 6)..<close])
                    switch name[name.index(after: close)...] {
                    case ".path": return .field(index)
                    case ".file":
                        guard let destination = destinations[index] ?? filename else {
                            throw AtollError(.invalidArgument, "files[\(index)] has no path")
                        }
                        return .file(destination)
                    default: return .ignore
                    }
                }
            }
            guard !written.isEmpty else { throw AtollError(.invalidArgument, "no files[i].file parts in the upload") }
            return try JSON.response(["files": written.map { ["path": $0] }])
        } catch {
            var body = ErrorMiddleware.body(for: (error as? AtollError).map(Self.fileError) ?? error, request, redact: redact)
            body.errors = [body.message]
            return try JSON.response(body, status: HTTPResponse.Status(code: body.statusCode))
        }
    }

    /// What a multipart part is for: a text field (kept, by key), a file (streamed to the path),
    /// or nothing.
    enum PartRole {
        case field(String)
        case file(String)
        case ignore
    }

    /// Largest text field of an upload (a path).
    static let fieldLimit = 8192

    /// Streams a multipart body into the sandbox: `role` decides, from a part's name, its filename
    /// and the text fields seen so far, what each part is. Returns the paths written, in order.
    /// Every chunk is written into the agent's pipe before the next is read, so the bytes in
    /// flight are bounded by one chunk and the pipe; the whole body is capped at `APILimits.upload`.
    static func receiveUploads(
        _ request: Request, files: SandboxFiles,
        role: (String, String?, [String: String]) throws -> PartRole
    ) async throws -> [String] {
        let boundary: String
        do {
            boundary = try Multipart.boundary(contentType: request.headers[.contentType])
        } catch {
            throw AtollError(.invalidArgument, error.message)
        }
        var parser = Multipart.StreamParser(boundary: boundary)
        var fields: [String: String] = [:]
        var written: [String] = []
        var current: PartRole = .ignore
        var field: [UInt8] = []
        var upload: FileUpload?
        var total = 0
        do {
            for try await chunk in request.body {
                total += chunk.readableBytes
                // Files of up to `upload` bytes together, plus their multipart framing.
                guard total <= APILimits.upload + APILimits.uploadFraming else {
                    throw AtollError(.tooLarge, "upload is larger than \(APILimits.upload) bytes (plus \(APILimits.uploadFraming) bytes of multipart framing)")
                }
                let events: [Multipart.Event]
                do {
                    events = try parser.feed(Array(buffer: chunk))
                } catch {
                    throw AtollError(.invalidArgument, error.message)
                }
                for event in events {
                    switch event {
                    case .partStart(let name, let filename):
                        current = try role(name, filename, fields)
                        field = []
                        if case .file(let path) = current {
                            upload = try await WorkPool.shared.run { try files.openWrite(path) }
                        }
                    case .data(let bytes):
                        switch current {
                        case .field:
                            field += bytes
                            guard field.count <= fieldLimit else {
                                throw AtollError(.invalidArgument, "a text field of the upload exceeds \(fieldLimit) bytes")
                            }
                        case .file:
                            if let upload { try await Self.send(bytes, to: upload) }
                        case .ignore:
                            break
                        }
                    case .partEnd:
                        switch current {
                        case .field(let key): fields[key] = String(decoding: field, as: UTF8.self)
                        case .file(let path):
                            if let finished = upload {
                                upload = nil
                                _ = try await WorkPool.shared.run { try finished.finish() }
                            }
                            written.append(path)
                        case .ignore: break
                        }
                        current = .ignore
                    }
                }
            }
            do {
                try parser.finish()
            } catch {
                throw AtollError(.invalidArgument, error.message)
            }
        } catch {
            upload?.cancel()  // the target stays as it was
            throw error
        }
        return written
    }

    /// Writes `bytes` into an upload's pipe: directly while it takes them, waiting on the work
    /// pool (never here) when it is full.
    static func send(_ bytes: [UInt8], to upload: FileUpload) async throws {
        var offset = 0
        while offset < bytes.count {
            let n = try bytes.withUnsafeBytes { try upload.writeAvailable(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            offset += n
            if n == 0 { try await WorkPool.shared.run { try upload.waitWritable() } }
        }
    }

    struct DownloadBody: Decodable { var paths: [String] }

    /// Streams a download to the response: reads what the pipe holds directly, waits on the work
    /// pool when it is empty; the response writer's backpressure bounds the bytes in flight.
    static func stream(_ download: FileDownload, to writer: inout any ResponseBodyWriter) async throws {
        while true {
            switch try download.readAvailable() {
            case .bytes(let bytes): try await writer.write(ByteBuffer(bytes: bytes))
            case .nothingYet: try await WorkPool.shared.run { try download.waitReadable() }
            case .end:
                try await WorkPool.shared.run { try download.finish() }
                return
            }
        }
    }

    /// One multipart part per requested path, its filename the path exactly as requested; a
    /// file that cannot be read is an `error` part with the daemon's code. Streamed file by file.
    @Sendable func bulkDownload(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(DownloadBody.self, from: request, context: context)
        guard !body.paths.isEmpty else { throw AtollError(.invalidArgument, "paths is empty") }
        let (id, org) = try sandbox(context)
        let files = try await manager.files(id, organizationId: org)
        let slot = try await manager.toolboxGate.slot(organization: org)
        let multipart = Multipart.StreamWriter()
        let paths = Array(Set(body.paths)).sorted()
        let redact = self.redact
        return Response(
            status: .ok, headers: [.contentType: multipart.contentType],
            body: ResponseBody { writer in
                defer { slot.release() }
                for path in paths {
                    do {
                        let download = try await WorkPool.shared.run { try files.openRead(path, limit: APILimits.download) }
                        defer { download.close() }
                        // No Content-Length: a /proc file says 0 and has more, any file may change meanwhile.
                        try await writer.write(ByteBuffer(bytes: multipart.header(name: "file", filename: path, contentType: "application/octet-stream")))
                        try await Self.stream(download, to: &writer)
                    } catch let error as AtollError {
                        let mapped = Self.fileError(error)
                        var body = ErrorMiddleware.body(for: mapped, request, redact: redact)
                        if !(mapped is ToolboxError) { body.code = "FILE_READ_FAILED" }
                        let json = try JSON.encoder.encode(body)
                        try await writer.write(
                            ByteBuffer(
                                bytes: multipart.header(
                                    name: "error", filename: path, contentType: "application/json",
                                    length: json.count) + [UInt8](json)))
                    }
                    try await writer.write(ByteBuffer(bytes: multipart.separator))
                }
                try await writer.write(ByteBuffer(bytes: multipart.closing))
                try await writer.finish(nil)
            })
    }

    /// `POST /files/upload?path=` with one `file` part, streamed into the sandbox.
    @Sendable func upload(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let (id, org) = try sandbox(context)
        let files = try await manager.files(id, organizationId: org)
        do {
            let written = try await manager.toolboxGate.run(organization: org) {
                try await Self.receiveUploads(request, files: files) { name, _, _ in name == "file" ? .file(path) : .ignore }
            }
            guard !written.isEmpty else { throw AtollError(.invalidArgument, "the upload has no \"file\" part") }
        } catch let error as AtollError {
            throw Self.fileError(error)
        }
        return JSON.empty(.ok)
    }

    /// `GET /files/download?path=`: the raw bytes, streamed out of the sandbox.
    @Sendable func download(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let (id, org) = try sandbox(context)
        let files = try await manager.files(id, organizationId: org)
        let slot = try await manager.toolboxGate.slot(organization: org)
        let download: FileDownload
        do {
            download = try await WorkPool.shared.run { try files.openRead(path, limit: APILimits.download) }
        } catch let error as AtollError {
            slot.release()
            throw Self.fileError(error)
        }
        // Chunked, not the size the file had when opened: a /proc file says 0 and has more, and
        // any file may change while it streams.
        return Response(
            status: .ok, headers: [.contentType: "application/octet-stream"],
            body: ResponseBody { writer in
                defer {
                    slot.release()
                    download.close()
                }
                try await Self.stream(download, to: &writer)
                try await writer.finish(nil)
            })
    }
}
