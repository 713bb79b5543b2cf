import AtollCore
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

    func register(_ toolbox: RouterGroup<AtollContext>) {
        toolbox.post(":id/process/execute", use: execute)
        toolbox.post(":id/process/code-run", use: codeRun)
        toolbox.post(":id/process/session", use: createSession)
        toolbox.get(":id/process/session", use: listSessions)
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
        toolbox.get(":id/files/download", use: download)
        toolbox.get(":id/user-home-dir") { _, context in try await directory(context) }
        toolbox.get(":id/work-dir") { _, context in try await directory(context) }
        toolbox.get(":id/version") { _, _ in try JSON.response(["version": AtollVersion.current]) }
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
        _ = try await manager.get(id, organizationId: org)
        let result: ExecResult
        do {
            result = try await manager.exec(id, ExecRequest(command: .shell(body.command), env: body.envs ?? [:], cwd: body.cwd,
                                                            timeout: timeout, mergeOutput: true), organizationId: org)
        } catch let error as AtollError where [.notFound, .system, .forbidden].contains(error.code) {
            return try JSON.response(ExecuteResponse(exitCode: -1, result: error.description))
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
        let result = try await manager.runCode(id, CodeRequest(
            language: language, code: body.code, arguments: body.argv ?? [], env: body.envs ?? [:], timeout: timeout,
            mergeOutput: true), organizationId: org)
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
        try await manager.createSession(id, sessionId: body.sessionId, organizationId: org)
        return JSON.empty(.created)
    }

    @Sendable func listSessions(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        return try JSON.response(try await manager.listSessions(id, organizationId: org).map(SessionDTO.init))
    }

    @Sendable func getSession(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let session = try await manager.getSession(id, sessionId: try context.parameters.require("session"), organizationId: org)
        return try JSON.response(SessionDTO(session))
    }

    @Sendable func deleteSession(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        try await manager.deleteSession(id, sessionId: try context.parameters.require("session"), organizationId: org)
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
        let (command, logs) = try await manager.executeInSession(
            id, sessionId: try context.parameters.require("session"), command: body.command, async: runAsync, organizationId: org)
        if runAsync { return try JSON.response(SessionExecResponse(cmdId: command.id), status: .accepted) }
        return try JSON.response(SessionExecResponse(cmdId: command.id, output: logs?.output, stdout: logs?.stdout,
                                                     stderr: logs?.stderr, exitCode: command.exitCode))
    }

    @Sendable func sessionCommand(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let command = try await manager.sessionCommand(id, sessionId: try context.parameters.require("session"),
                                                       commandId: try context.parameters.require("command"), organizationId: org)
        return try JSON.response(SessionDTO.Command(id: command.id, command: command.command, exitCode: command.exitCode))
    }

    @Sendable func sessionLogs(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        if try request.boolQuery("follow") == true {
            throw AtollError(.invalidArgument, "follow=true needs a WebSocket, which Atoll does not serve yet; poll without follow")
        }
        let logs = try await manager.sessionCommandLogs(id, sessionId: try context.parameters.require("session"),
                                                        commandId: try context.parameters.require("command"), organizationId: org)
        return try JSON.response(["output": logs.output, "stdout": logs.stdout, "stderr": logs.stderr])
    }

    // MARK: - Files

    /// Runs a file operation with the sandbox's files, mapping its errors to the daemon's codes.
    func withFiles<T>(_ context: AtollContext, _ body: (SandboxFiles) throws -> T) async throws -> T {
        let (id, org) = try sandbox(context)
        let files = try await manager.files(id, organizationId: org)
        do {
            return try body(files)
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
            var result = try files.list(path)
            var frontier = result.filter(\.isDirectory)
            for _ in 1..<depth {
                var next: [FileEntry] = []
                for dir in frontier {
                    let children = (try? files.list(dir.path)) ?? []
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
            throw ToolboxError(error: AtollError(.invalidArgument, "mode must be octal permissions such as 755, got \"\(modeText.prefix(16))\""),
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
            try files.find(path, pattern: pattern).map { MatchDTO(file: Self.present($0.file, requested: path, home: files.home), line: $0.line, content: $0.content) }
        }
        return try JSON.response(matches)
    }

    @Sendable func searchFiles(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let pattern = try request.requireQuery("pattern")
        let found = try await withFiles(context) { files in
            try files.search(path, pattern: pattern).map { Self.present($0, requested: path, home: files.home) }
        }
        return try JSON.response(["files": found])
    }

    @Sendable func directory(_ context: AtollContext) async throws -> Response {
        let home = try await withFiles(context) { $0.home }
        return try JSON.response(["dir": home])
    }

    // MARK: - Transfers

    struct UploadError: Encodable {
        var errors: [String]
        var statusCode: Int
        var message: String
        var code: String
        var source = "DAYTONA_DAEMON"
    }

    /// `files[i].path` text fields name where `files[i].file` goes (relative to the home).
    @Sendable func bulkUpload(_ request: Request, context: AtollContext) async throws -> Response {
        do {
            let parts = try await multipartParts(request)
            var destinations: [String: String] = [:]
            var contents: [(index: String, part: Multipart.Part)] = []
            for part in parts {
                guard part.name.hasPrefix("files["), let close = part.name.firstIndex(of: "]") else { continue }
                let index = String(part.name[part.name.index(part.name.startIndex, offsetBy: 6)..<close])
                let field = part.name[part.name.index(after: close)...]
                if field == ".path" { destinations[index] = String(decoding: part.body, as: UTF8.self) }
                if field == ".file" { contents.append((index, part)) }
            }
            guard !contents.isEmpty else { throw AtollError(.invalidArgument, "no files[i].file parts in the upload") }
            let written = try await withFiles(context) { files -> [[String: String]] in
                try contents.map { item in
                    guard let destination = destinations[item.index] ?? item.part.filename else {
                        throw AtollError(.invalidArgument, "files[\(item.index)] has no path")
                    }
                    _ = try files.write(destination, bytes: [UInt8](item.part.body))
                    return ["path": destination]
                }
            }
            return try JSON.response(["files": written])
        } catch {
            let atoll = ErrorMiddleware.atollError((error as? ToolboxError)?.error ?? error)
            let status = atoll.code.httpStatus
            return try JSON.response(UploadError(errors: [atoll.description], statusCode: status, message: atoll.description,
                                                 code: (error as? ToolboxError)?.daemonCode ?? atoll.code.rawValue),
                                     status: HTTPResponse.Status(code: status))
        }
    }

    func multipartParts(_ request: Request) async throws -> [Multipart.Part] {
        let boundary: String
        do {
            boundary = try Multipart.boundary(contentType: request.headers[.contentType])
        } catch {
            throw AtollError(.invalidArgument, error.message)
        }
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: APILimits.upload)
        } catch {
            throw AtollError(.tooLarge, "upload is larger than \(APILimits.upload) bytes")
        }
        do {
            return try Multipart.parse(Data(buffer: buffer), boundary: boundary)
        } catch {
            throw AtollError(.invalidArgument, error.message)
        }
    }

    struct DownloadBody: Decodable { var paths: [String] }

    struct PartError: Encodable {
        var message: String
        var statusCode: Int
        var code: String
        var source = "DAYTONA_DAEMON"
    }

    /// One multipart part per requested path, its filename the path exactly as requested; a
    /// file that cannot be read is an `error` part with the daemon's code.
    @Sendable func bulkDownload(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(DownloadBody.self, from: request, context: context)
        guard !body.paths.isEmpty else { throw AtollError(.invalidArgument, "paths is empty") }
        let (id, org) = try sandbox(context)
        let files = try await manager.files(id, organizationId: org)
        var writer = Multipart.Writer()
        for path in Array(Set(body.paths)).sorted() {
            do {
                let bytes = try files.read(path, limit: APILimits.download)
                writer.add(name: "file", filename: path, contentType: "application/octet-stream", data: Data(bytes))
            } catch let error as AtollError {
                let mapped = Self.fileError(error) as? ToolboxError
                let status = error.code.httpStatus
                let json = try JSON.encoder.encode(PartError(message: error.description, statusCode: status,
                                                             code: mapped?.daemonCode ?? "FILE_READ_FAILED"))
                writer.add(name: "error", filename: path, contentType: "application/json", data: json)
            }
        }
        let data = writer.finish()
        return Response(status: .ok, headers: [.contentType: writer.contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// `POST /files/upload?path=` with one `file` part.
    @Sendable func upload(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        guard let part = try await multipartParts(request).first(where: { $0.name == "file" }) else {
            throw AtollError(.invalidArgument, "the upload has no \"file\" part")
        }
        _ = try await withFiles(context) { try $0.write(path, bytes: [UInt8](part.body)) }
        return JSON.empty(.ok)
    }

    /// `GET /files/download?path=`: the raw bytes.
    @Sendable func download(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let bytes = try await withFiles(context) { try $0.read(path, limit: APILimits.download) }
        return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
