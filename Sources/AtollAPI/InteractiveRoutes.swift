import AtollCore
import AtollRuntime
import AtollSandbox
import Foundation
import Hummingbird

/// The services behind the interactive toolbox, shared by its REST routes and its WebSockets.
struct InteractiveServices: Sendable {
    let sessions: Sessions
    let terminals: Terminals
    let interpreters: Interpreters

    init(manager: SandboxManager) {
        sessions = Sessions(runner: manager)
        terminals = Terminals(runner: manager)
        interpreters = Interpreters(runner: manager)
    }
}

/// The REST half of the interactive toolbox: PTY sessions (list, info, resize, kill), input to
/// a running session command, and interpreter contexts. The WebSocket half is `ToolboxSockets`;
/// a plain request to one of its paths gets the error its upgrade would (or a 400 saying it
/// needs a WebSocket).
struct InteractiveRoutes {
    let manager: SandboxManager
    let services: InteractiveServices

    func register(_ toolbox: RouterGroup<AtollContext>) {
        toolbox.get(":id/process/pty", use: listTerminals)
        toolbox.get(":id/process/pty/create-connect", use: webSocketOnly)
        toolbox.get(":id/process/pty/:pty", use: terminalInfo)
        toolbox.get(":id/process/pty/:pty/connect", use: webSocketOnly)
        toolbox.post(":id/process/pty/:pty/resize", use: resizeTerminal)
        toolbox.delete(":id/process/pty/:pty", use: killTerminal)
        toolbox.post(":id/process/session/:session/command/:command/input", use: sendInput)
        toolbox.post(":id/process/interpreter/context", use: createContext)
        toolbox.get(":id/process/interpreter/context", use: listContexts)
        toolbox.delete(":id/process/interpreter/context/:context", use: deleteContext)
        toolbox.get(":id/process/interpreter/execute", use: webSocketOnly)
        toolbox.get(":id/process/exec-stream", use: webSocketOnly)
    }

    func sandbox(_ context: AtollContext) throws -> (String, String) {
        (try context.parameters.require("id"), try context.organization())
    }

    /// A WebSocket path reached without an upgrade: the error the upgrade would have got, or a
    /// 400 that says what is missing.
    @Sendable func webSocketOnly(_ request: Request, context: AtollContext) async throws -> Response {
        let sockets = ToolboxSockets(manager: manager, sessions: services.sessions, terminals: services.terminals, interpreters: services.interpreters)
        if let target = ToolboxSockets.target(request.head) { _ = try await sockets.admit(request.head, target) }
        throw ToolboxSockets.needsWebSocket(request.uri.path)
    }

    static func dto(_ info: TerminalInfo) -> [String: Any] {
        [
            "id": info.id, "cwd": info.cwd, "envs": info.env, "cols": info.size.columns, "rows": info.size.rows,
            "createdAt": ISO8601DateFormatter().string(from: info.createdAt), "active": info.active, "lazyStart": false,
        ]
    }

    static func dto(_ info: InterpreterContextInfo) -> [String: Any] {
        ["id": info.id, "cwd": info.cwd, "language": info.language, "active": info.active, "createdAt": ISO8601DateFormatter().string(from: info.createdAt)]
    }

    static func json(_ object: Any) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    @Sendable func listTerminals(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        return try Self.json(["sessions": try await services.terminals.list(id, organizationId: org).map(Self.dto)])
    }

    @Sendable func terminalInfo(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        return try Self.json(Self.dto(try await services.terminals.terminal(id, id: try context.parameters.require("pty"), organizationId: org).info))
    }

    struct ResizeBody: Decodable {
        var cols: Int
        var rows: Int
    }

    @Sendable func resizeTerminal(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let body = try await JSON.decode(ResizeBody.self, from: request, context: context)
        let info = try await services.terminals.resize(
            id, id: try context.parameters.require("pty"), to: try TerminalSize(rows: body.rows, columns: body.cols), organizationId: org)
        return try Self.json(Self.dto(info))
    }

    @Sendable func killTerminal(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        try await services.terminals.kill(id, id: try context.parameters.require("pty"), organizationId: org)
        return try Self.json([String: String]())
    }

    struct InputBody: Decodable {
        var data: String
    }

    @Sendable func sendInput(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let body = try await JSON.decode(InputBody.self, from: request, context: context)
        try await services.sessions.sendInput(
            id, sessionId: try context.parameters.require("session"), commandId: try context.parameters.require("command"), data: body.data,
            organizationId: org)
        return Response(status: .noContent)
    }

    struct ContextBody: Decodable {
        var cwd: String?
        var language: String?
    }

    @Sendable func createContext(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        let body = try await JSON.decode(ContextBody.self, from: request, context: context, allowEmpty: true)
        let info = try await services.interpreters.create(id, cwd: body.cwd.flatMap { $0.isEmpty ? nil : $0 }, language: body.language, organizationId: org)
        return try Self.json(Self.dto(info))
    }

    @Sendable func listContexts(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        return try Self.json(["contexts": try await services.interpreters.list(id, organizationId: org).map(Self.dto)])
    }

    @Sendable func deleteContext(_ request: Request, context: AtollContext) async throws -> Response {
        let (id, org) = try sandbox(context)
        try await services.interpreters.delete(id, id: try context.parameters.require("context"), organizationId: org)
        return try Self.json([String: String]())
    }
}
