import AtollCore
import AtollDaytona
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollWire
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket

/// The toolbox's WebSockets (wire details in docs/interactive.md): PTY sessions
/// (`process/pty/create-connect`, `process/pty/{id}/connect`), following a session command's
/// logs (`…/command/{id}/logs?follow=true`), the code interpreter (`process/interpreter/execute`)
/// and Atoll's live exec (`process/exec-stream`, for the CLI). The upgrade is authenticated like
/// any toolbox request. What can be checked without side effects (the key, the sandbox running,
/// the parameters) is checked before the upgrade; a refusal is told over the WebSocket (a close
/// with 4000 + the HTTP status and the message). A plain request to one of these paths gets the
/// same error as JSON from the router, or a 400 saying it needs the upgrade.
struct ToolboxSockets: Sendable {
    let manager: SandboxManager
    let sessions: Sessions
    let terminals: Terminals
    let interpreters: Interpreters

    typealias Upgrade = ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>>

    /// The largest message a client may send.
    static let maximumMessage = 1 << 20

    /// What a toolbox WebSocket path asks for.
    enum Endpoint: Equatable {
        case createTerminal
        case connectTerminal(String)
        case followLogs(session: String, command: String)
        case followEntrypoint
        case interpreter
        case execStream

        var isTerminal: Bool {
            switch self {
            case .createTerminal, .connectTerminal: return true
            default: return false
            }
        }
    }

    typealias Target = (sandbox: String, endpoint: Endpoint, query: [String: String])

    /// The sandbox and endpoint of a toolbox WebSocket path, or nil when the path is none.
    static func endpoint(_ path: String) -> (sandbox: String, endpoint: Endpoint)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // "", "toolbox", id, "process", …
        guard parts.count >= 5, parts[0].isEmpty, parts[1] == "toolbox", parts[3] == "process" else { return nil }
        let id = parts[2].removingPercentEncoding ?? parts[2]
        let rest = Array(parts[4...])
        switch rest.count {
        case 2 where rest == ["pty", "create-connect"]: return (id, .createTerminal)
        case 3 where rest[0] == "pty" && rest[2] == "connect": return (id, .connectTerminal(rest[1]))
        case 2 where rest == ["interpreter", "execute"]: return (id, .interpreter)
        case 1 where rest == ["exec-stream"]: return (id, .execStream)
        case 3 where rest == ["session", "entrypoint", "logs"]: return (id, .followEntrypoint)
        case 5 where rest[0] == "session" && rest[2] == "command" && rest[4] == "logs": return (id, .followLogs(session: rest[1], command: rest[3]))
        default: return nil
        }
    }

    /// A browser cannot set headers on a WebSocket, so the dashboard offers its key as the
    /// subprotocol `atoll.bearer.<key>` (never echoed back).
    static let bearerProtocol = "atoll.bearer."

    /// The caller's organization, from the bearer key (the Authorization header, or the
    /// `atoll.bearer.` subprotocol).
    func organization(_ head: HTTPRequest) throws -> String {
        let key: String
        if let header = head.headerFields[.authorization] {
            key = try AuthMiddleware.bearerKey(header)
        } else if let offered = Self.offeredSubprotocols(head).first(where: { $0.hasPrefix(Self.bearerProtocol) }) {
            key = String(offered.dropFirst(Self.bearerProtocol.count))
        } else {
            throw AuthMiddleware.missingKey
        }
        return try AuthMiddleware.holder(ofKey: key, database: manager.database).organizationId
    }

    /// The subprotocol answered: the first one offered that is not a credential or a payload (a
    /// browser fails a handshake that offered subprotocols and got none back).
    static func echoedSubprotocol(_ head: HTTPRequest) -> HTTPFields {
        var headers = HTTPFields()
        if let chosen = offeredSubprotocols(head).first(where: { !$0.hasPrefix(bearerProtocol) && !$0.hasPrefix(envsPrefix) }) {
            headers[HTTPField.Name("Sec-WebSocket-Protocol")!] = chosen
        }
        return headers
    }

    static func offeredSubprotocols(_ head: HTTPRequest) -> [String] {
        head.headerFields[values: HTTPField.Name("Sec-WebSocket-Protocol")!].flatMap { $0.split(separator: ",") }.map {
            $0.trimmingCharacters(in: .whitespaces)
        }
    }

    /// The sandbox, endpoint and query of a request for a toolbox WebSocket path, or nil.
    static func target(_ head: HTTPRequest) -> Target? {
        let components = URLComponents(string: head.path ?? "/")
        guard let path = components?.percentEncodedPath, let (sandbox, endpoint) = endpoint(path) else { return nil }
        var query: [String: String] = [:]
        for item in components?.queryItems ?? [] { query[item.name] = item.value ?? "" }
        return (sandbox, endpoint, query)
    }

    /// Checks, without starting anything, that `head` may be upgraded (a check of the sandbox
    /// counts as activity, as every toolbox call does): the error a plain request to the same
    /// path gets, or what the upgrade needs; nil when it is not a WebSocket request after all
    /// (logs without `follow`).
    func admit(_ head: HTTPRequest, _ target: Target) async throws -> Admitted? {
        let (sandbox, endpoint, query) = target
        let organization = try organization(head)
        _ = try await manager.touch(sandbox, organizationId: organization)
        switch endpoint {
        case .createTerminal:
            guard let id = query["id"], !id.isEmpty else { throw AtollError(.invalidArgument, "id: the PTY session's id is required") }
            try Sessions.checkSessionID(id)
            _ = try Self.terminalSize(query)
        case .connectTerminal(let id):
            _ = try await terminals.terminal(sandbox, id: id, organizationId: organization)
        case .followLogs(let session, let command):
            guard query["follow"].map({ ["true", "1"].contains($0.lowercased()) }) ?? false else { return nil }
            _ = try await sessions.command(sandbox, sessionId: session, commandId: command, organizationId: organization)
        case .followEntrypoint:
            guard query["follow"].map({ ["true", "1"].contains($0.lowercased()) }) ?? false else { return nil }
        case .interpreter, .execStream:
            break
        }
        return Admitted(sandbox: sandbox, organization: organization, endpoint: endpoint, query: query, head: head)
    }

    /// The size a create-connect asks for (`rows`, `cols`; 24 × 80 by default, as the SDK's).
    static func terminalSize(_ query: [String: String]) throws -> TerminalSize {
        func number(_ name: String, _ fallback: Int) throws -> Int {
            guard let text = query[name] else { return fallback }
            guard let value = Int(text) else { throw AtollError(.invalidArgument, "\(name) must be a whole number, got \"\(text.prefix(16))\"") }
            return value
        }
        let (rows, cols) = (try number("rows", 24), try number("cols", 80))
        do {
            return try TerminalSize(rows: rows, columns: cols)
        } catch {
            throw AtollError(.invalidArgument, "cols=\(cols) rows=\(rows): \(error.message)")
        }
    }

    struct Admitted: Sendable {
        var sandbox: String
        var organization: String
        var endpoint: Endpoint
        var query: [String: String]
        var head: HTTPRequest

        /// The client's offered subprotocols.
        var subprotocols: [String] { ToolboxSockets.offeredSubprotocols(head) }
    }

    /// Hummingbird's upgrade decision for a toolbox WebSocket path; nil when the path is not one
    /// (or the request fails the checks: the router answers it).
    func shouldUpgrade(_ head: HTTPRequest, logger: Logger) async -> Upgrade? {
        guard let target = Self.target(head) else { return nil }
        let admitted: Admitted
        do {
            guard let found = try await admit(head, target) else { return nil }
            admitted = found
        } catch {
            // Hummingbird can only answer a declined upgrade with an empty 400, so the refusal
            // is told over the WebSocket: the PTY's control error (what the SDK shows), then a
            // close with 4000 + the HTTP status and the message.
            return .upgrade(Self.echoedSubprotocol(head)) { _, outbound, _ in
                if target.endpoint.isTerminal {
                    let message = (error as? AtollError)?.message ?? "\(error)"
                    try? await outbound.write(.text(Self.json(["type": "control", "status": "error", "error": message])))
                }
                await Self.close(outbound, error)
            }
        }
        switch admitted.endpoint {
        case .createTerminal, .connectTerminal: return terminal(admitted)
        case .followLogs(let session, let command): return followLogs(admitted, session: session, command: command)
        case .followEntrypoint:
            return .upgrade(Self.echoedSubprotocol(head)) { _, outbound, _ in try await outbound.close(.normalClosure, reason: nil) }
        case .interpreter: return interpreter(admitted)
        case .execStream: return execStream(admitted)
        }
    }

    /// The error a plain (not upgraded) request to a WebSocket path gets, when it passes every check.
    static func needsWebSocket(_ path: String) -> AtollError {
        AtollError(.invalidArgument, "\(path.prefix(120)) is a WebSocket: send the request with an Upgrade: websocket header")
    }

    /// Closes with 4000 + the error's HTTP status and its message.
    static func close(_ outbound: WebSocketOutboundWriter, _ error: any Error) async {
        let atoll = error as? AtollError ?? AtollError(.internal, "\(error)")
        await WebSocketRefusal.close(outbound, status: atoll.code.httpStatus, message: atoll.message)
    }

    static func json(_ object: [String: Any]) -> String {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    // MARK: - PTY

    static let exitControl = "X-Daytona-Pty-Exit-Control"
    static let envsPrefix = "X-Daytona-Pty-Envs~"

    /// The environment a client sent as a subprotocol token (base64url of a JSON object).
    static func terminalEnv(_ subprotocols: [String]) throws -> [String: String] {
        guard let token = subprotocols.first(where: { $0.hasPrefix(envsPrefix) })?.dropFirst(envsPrefix.count) else { return [:] }
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let env = try? JSONDecoder().decode([String: String].self, from: data) else {
            throw AtollError(.invalidArgument, "the \(envsPrefix) subprotocol must be base64url of a JSON object of strings")
        }
        return env
    }

    func terminal(_ admitted: Admitted) -> Upgrade {
        let headers = Self.echoedSubprotocol(admitted.head)
        let terminals = self.terminals
        let manager = self.manager
        return .upgrade(headers) { inbound, outbound, _ in
            let terminal: Terminal
            do {
                switch admitted.endpoint {
                case .createTerminal:
                    let env = try Self.terminalEnv(admitted.subprotocols)
                    let cwd = admitted.query["cwd"].flatMap { $0.isEmpty ? nil : $0 }
                    terminal = try await terminals.create(
                        admitted.sandbox, id: admitted.query["id"] ?? "", cwd: cwd, env: env, size: try Self.terminalSize(admitted.query),
                        organizationId: admitted.organization)
                case .connectTerminal(let id):
                    terminal = try await terminals.terminal(admitted.sandbox, id: id, organizationId: admitted.organization)
                default: return
                }
            } catch {
                let message = (error as? AtollError)?.message ?? "\(error)"
                try? await outbound.write(.text(Self.json(["type": "control", "status": "error", "error": message])))
                await Self.close(outbound, error)
                return
            }
            let now: @Sendable () -> Double = { manager.clock.now().timeIntervalSince1970 }
            let (events, client) = terminal.connect(now: now())
            defer { terminal.disconnect(client, now: now()) }
            try await outbound.write(.text(Self.json(["type": "control", "status": "connected"])))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await event in events {
                        switch event {
                        case .output(let bytes):
                            try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
                        case .exited(let code, let reason):
                            var control: [String: Any] = ["type": "control", "status": "exited", "exitCode": Int(code)]
                            var end: [String: Any] = ["exitCode": Int(code)]
                            if let reason {
                                control["exitReason"] = reason
                                end["exitReason"] = reason
                            }
                            try await outbound.write(.text(Self.json(control)))
                            try await outbound.close(.normalClosure, reason: Self.json(end))
                            return
                        case .replaced:
                            try await outbound.close(WebSocketErrorCode(codeNumber: 4409), reason: "another client connected to this PTY session")
                            return
                        }
                    }
                }
                group.addTask {
                    var touched = now()
                    for try await message in inbound.messages(maxSize: Self.maximumMessage) {
                        switch message {
                        case .binary(let buffer): try terminal.input.write(Array(buffer.readableBytesView))
                        case .text(let text): try terminal.input.write(Array(text.utf8))
                        }
                        if now() - touched > 10 {
                            touched = now()
                            try? await manager.touch(terminal.sandbox)
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    // MARK: - Log follow

    func followLogs(_ admitted: Admitted, session: String, command: String) -> Upgrade {
        let sessions = self.sessions
        return .upgrade(Self.echoedSubprotocol(admitted.head)) { _, outbound, _ in
            do {
                // Daytona's framing: every chunk carries its stream's prefix.
                try await sessions.follow(admitted.sandbox, sessionId: session, commandId: command, organizationId: admitted.organization) {
                    channel, bytes in
                    var buffer = ByteBuffer(bytes: channel == .stdout ? [1, 1, 1] : [2, 2, 2])
                    buffer.writeBytes(bytes)
                    try await outbound.write(.binary(buffer))
                }
                try await outbound.close(.normalClosure, reason: nil)
            } catch {
                await Self.close(outbound, error)
            }
        }
    }

    // MARK: - Interpreter

    struct RunRequest: Decodable {
        var code: String
        var contextId: String?
        var envs: [String: String]?
        var timeout: Double?
    }

    func interpreter(_ admitted: Admitted) -> Upgrade {
        let interpreters = self.interpreters
        return .upgrade(Self.echoedSubprotocol(admitted.head)) { inbound, outbound, _ in
            do {
                var iterator = inbound.messages(maxSize: 16 << 20).makeAsyncIterator()
                guard let first = try await iterator.next() else { return }
                let data: Data
                switch first {
                case .text(let text): data = Data(text.utf8)
                case .binary(let buffer): data = Data(buffer.readableBytesView)
                }
                let request: RunRequest
                do {
                    request = try JSONDecoder().decode(RunRequest.self, from: data)
                } catch {
                    throw AtollError(.invalidArgument, "the first message must be JSON {\"code\", \"contextId\"?, \"envs\"?, \"timeout\"?}: \(error)")
                }
                let end = try await interpreters.run(
                    admitted.sandbox, contextId: request.contextId, code: request.code, env: request.envs ?? [:],
                    timeout: request.timeout.flatMap { $0 > 0 ? $0 : nil }, organizationId: admitted.organization
                ) { event in
                    let frame: [String: Any] =
                        switch event {
                        case .stdout(let text): ["type": "stdout", "text": text]
                        case .stderr(let text): ["type": "stderr", "text": text]
                        case .error(let name, let value, let traceback): ["type": "error", "name": name, "value": value, "traceback": traceback]
                        }
                    try await outbound.write(.text(Self.json(frame)))
                }
                switch end {
                case .completed: try await outbound.close(.normalClosure, reason: nil)
                case .timedOut(let survived):
                    // 4008: Daytona's "execution timed out", which the SDK raises as a timeout.
                    try await outbound.close(
                        WebSocketErrorCode(codeNumber: 4008),
                        reason: survived ? "execution timed out; the context lives on" : "execution timed out; the context was killed")
                }
            } catch {
                await Self.close(outbound, error)
            }
        }
    }

    // MARK: - Live exec (Atoll's CLI)

    /// Atoll's live exec: the client sends the request as JSON, then its stdin as binary
    /// messages and `{"type":"eof"}`, `{"type":"resize","rows","cols"}` or
    /// `{"type":"signal","signal"}` as text; the server sends output as binary messages whose
    /// first byte is 1 (stdout) or 2 (stderr), then `{"type":"exit","exitCode","timedOut"}` and a
    /// 1000 close. With `rows` and `cols` the process gets a terminal (output is all stdout).
    func execStream(_ admitted: Admitted) -> Upgrade {
        let manager = self.manager
        return .upgrade(Self.echoedSubprotocol(admitted.head)) { inbound, outbound, _ in
            do {
                var iterator = inbound.messages(maxSize: Self.maximumMessage).makeAsyncIterator()
                guard let first = try await iterator.next() else { return }
                guard case .text(let text) = first, let request = try? JSONDecoder().decode(LiveExecRequest.self, from: Data(text.utf8)) else {
                    throw AtollError(
                        .invalidArgument,
                        "the first message must be JSON {\"argv\", \"command\" or \"code\", \"env\"?, \"cwd\"?, \"timeout\"?, \"rows\"?, \"cols\"?}")
                }
                if request.user != nil {
                    throw AtollError(.invalidArgument, "user: processes started through the API run as the sandbox's user")
                }
                let terminal = try request.terminalSize()
                let command: ExecRequest.Command
                var staged: StagedCode?
                if let plain = try request.execCommand() {
                    command = plain
                } else {
                    let language = try request.language.map { try Language(parsing: $0) }
                    let prepared = try await manager.prepareCode(
                        admitted.sandbox, language: language, code: request.code ?? "", arguments: request.arguments ?? [],
                        organizationId: admitted.organization)
                    command = .argv(prepared.argv)
                    staged = prepared
                }
                let input = try LiveInput()
                let (chunks, sink) = AsyncStream<(OutputChannel, [UInt8])>.makeStream()
                let process: LiveProcess
                do {
                    process = try await manager.startLive(
                        admitted.sandbox,
                        ExecRequest(command: command, env: request.env ?? [:], cwd: request.cwd, timeout: request.timeout),
                        terminal: terminal, input: input, organizationId: admitted.organization
                    ) { channel, bytes in sink.yield((channel, bytes)) }
                } catch {
                    await staged?.remove()
                    throw error
                }
                let reader = Task {
                    while let message = try await iterator.next() {
                        switch message {
                        case .binary(let buffer): try input.write(Array(buffer.readableBytesView))
                        case .text(let text):
                            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { continue }
                            switch object["type"] as? String {
                            case "eof": input.closeInput()
                            case "resize":
                                if let rows = object["rows"] as? Int, let cols = object["cols"] as? Int, let size = try? TerminalSize(rows: rows, columns: cols)
                                {
                                    input.resize(rows: UInt16(size.rows), columns: UInt16(size.columns))
                                }
                            case "signal":
                                if let signal = object["signal"] as? Int, (1...64).contains(signal) { input.signal(Int32(signal)) }
                            default: continue
                            }
                        }
                    }
                    // The client went away: so does the process.
                    if !input.isFinished { input.signal(SIGKILL) }
                }
                defer { reader.cancel() }
                let waiter = Task {
                    let result = await process.wait()
                    sink.finish()
                    return result
                }
                for await (channel, bytes) in chunks {
                    var buffer = ByteBuffer(bytes: [channel == .stdout ? 1 : 2])
                    buffer.writeBytes(bytes)
                    try await outbound.write(.binary(buffer))
                }
                let result = await waiter.value
                await staged?.remove()
                let outcome = try result.get()
                try await outbound.write(
                    .text(Self.json(["type": "exit", "exitCode": Int(outcome.termination.shellStatus), "timedOut": outcome.timedOut])))
                try await outbound.close(.normalClosure, reason: nil)
            } catch {
                await Self.close(outbound, error)
            }
        }
    }
}
