import AtollCore
import AtollDaytona
public import AtollRuntime
import AtollStore
import AtollWire
import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
public import Logging

/// How the server describes itself to clients.
public struct ServerSettings: Sendable {
    /// The base URL clients reach the server at, e.g. `http://127.0.0.1:3986`; used for the
    /// toolbox URL when a request carries no Host header.
    public var publicURL: String
    /// Takes host paths out of what clients see (set by the router from the runtime's configuration).
    var redact = HostPathRedaction(replacements: [])
    /// Preview URLs are `http://{port}-{sandbox id}.{previewDomain}[:port]/`. `localhost` works in
    /// browsers with no DNS set-up (they resolve every `*.localhost` to loopback).
    public var previewDomain: String
    /// Seconds a sandbox's server gets to start answering a preview request.
    public var previewAnswerTimeout: Int64 = ServerSettings.defaultPreviewAnswerTimeout
    public static let defaultPreviewAnswerTimeout: Int64 = 60

    public init(publicURL: String, previewDomain: String = ServerSettings.defaultPreviewDomain) {
        self.publicURL = publicURL
        self.previewDomain = previewDomain
    }

    public static let defaultPreviewDomain = "localhost"

    /// The preview URL of `port` of `sandbox`, on the port the client reached this server at.
    func previewURL(_ sandbox: SandboxID, port: Int, _ request: Request) -> String {
        let authority = request.head.authority ?? publicURL.split(separator: "/").last.map(String.init) ?? ""
        let serverPort = authority.hasSuffix("]") ? nil : authority.split(separator: ":").dropFirst().last
        return "http://\(port)-\(sandbox.rawValue).\(previewDomain)" + (serverPort.map { ":\($0)" } ?? "")
    }

    /// The wire form of a sandbox, its error reason without host paths.
    func dto(_ sandbox: Sandbox, _ request: Request) -> SandboxDTO { dto(sandbox, toolboxURL(for: request)) }

    func dto(_ sandbox: Sandbox, _ toolboxURL: String) -> SandboxDTO {
        var dto = SandboxDTO(sandbox, toolboxURL: toolboxURL)
        dto.errorReason = dto.errorReason.map(redact.callAsFunction)
        return dto
    }

    /// `toolboxProxyUrl`: the toolbox under the same host the client used.
    func toolboxURL(for request: Request) -> String {
        if let host = request.head.authority, !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || ".-:[]_".contains($0) }) {
            return "http://\(host)/toolbox"
        }
        return "\(publicURL)/toolbox"
    }
}

/// Builds the HTTP application: `/api` (Daytona's sandbox API and Atoll's `/api/usage`),
/// `/toolbox/{id}/…`, `/metrics` (Prometheus), `/health`.
public enum AtollServer {
    public static func router(manager: SandboxManager, settings: ServerSettings, metrics: RequestMetrics = RequestMetrics()) throws -> Router<AtollContext> {
        try router(manager: manager, settings: settings, metrics: metrics, previewTokens: nil, services: InteractiveServices(manager: manager))
    }

    static func router(
        manager: SandboxManager, settings: ServerSettings, metrics: RequestMetrics, previewTokens: PreviewTokens?, services: InteractiveServices
    ) throws -> Router<AtollContext> {
        let router = Router(context: AtollContext.self)
        let redact = HostPathRedaction(configuration: manager.configuration)
        let previewTokens = try previewTokens ?? PreviewTokens(dataDirectory: manager.configuration.dataDirectory, database: manager.database)
        router.add(middleware: ErrorMiddleware(metrics: metrics, redact: redact))
        // Before every route: a preview host or path is the sandbox's, whatever its path says.
        router.add(
            middleware: PreviewProxy(manager: manager, tokens: previewTokens, domain: settings.previewDomain, answerTimeout: settings.previewAnswerTimeout))
        router.get("health") { _, _ in try JSON.response(["status": "ok", "version": AtollVersion.current]) }
        // Prometheus scrapes with a bearer key too; a key sees its organization's sandboxes.
        router.group("metrics").add(middleware: AuthMiddleware(database: manager.database)).get { _, context in
            let text = try await Prometheus.render(manager: manager, requests: metrics, organizationId: try context.organization(), admin: context.isAdmin)
            return Response(status: .ok, headers: [.contentType: Prometheus.contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let api = router.group("api").add(middleware: AuthMiddleware(database: manager.database))
        var settings = settings
        settings.redact = redact
        SandboxRoutes(manager: manager, server: settings).register(api)
        SnapshotRoutes(manager: manager, server: settings).register(api)
        PreviewRoutes(manager: manager, server: settings, tokens: previewTokens).register(api)
        TelemetryRoutes(manager: manager, server: settings).register(api)
        UsageRoutes(manager: manager).register(api)
        DashboardRoutes(manager: manager).register(router, api: api)
        let toolbox = router.group("toolbox").add(middleware: AuthMiddleware(database: manager.database))
        ToolboxRoutes(manager: manager, sessions: services.sessions, redact: redact).register(toolbox)
        InteractiveRoutes(manager: manager, services: services).register(toolbox)
        GitRoutes(manager: manager, redact: redact).register(toolbox)
        return router
    }

    /// The application listening on `host:port` (port 0 picks a free one; `onRunning` learns it),
    /// with `limits` on connections: a total and per-peer cap (the total kept below the process's
    /// descriptor limit minus a reserve for sandboxes), idle and stall timeouts, and bounded
    /// header sizes.
    public static func application(
        manager: SandboxManager, host: String, port: Int, logger: Logger, limits: ConnectionLimits = ConnectionLimits(),
        descriptorLimit: Int = 1024, previewDomain: String = ServerSettings.defaultPreviewDomain,
        previewAnswerTimeout: Int64 = ServerSettings.defaultPreviewAnswerTimeout,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        var settings = ServerSettings(publicURL: "http://\(host.contains(":") ? "[\(host)]" : host):\(port)", previewDomain: previewDomain)
        settings.previewAnswerTimeout = previewAnswerTimeout
        let peers = PeerCounter()
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionGuard(limits: limits)],
            idleTimeout: .seconds(limits.idleSeconds),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 << 10, maxHeaderListSize: 64 << 10, maxHeaderFieldCount: 200))
        let previewTokens = try PreviewTokens(dataDirectory: manager.configuration.dataDirectory, database: manager.database)
        let preview = PreviewProxy(manager: manager, tokens: previewTokens, domain: previewDomain, answerTimeout: previewAnswerTimeout)
        let services = InteractiveServices(manager: manager)
        let sockets = ToolboxSockets(manager: manager, sessions: services.sessions, terminals: services.terminals, interpreters: services.interpreters)
        return Application(
            router: try router(manager: manager, settings: settings, metrics: RequestMetrics(), previewTokens: previewTokens, services: services),
            // Requests that ask for a WebSocket upgrade: a preview host or path is the sandbox's;
            // otherwise the toolbox's WebSockets; those neither takes are ordinary HTTP requests.
            server: HTTPServerBuilder { responder in
                GuardedServerChannel(
                    inner: HTTP1WebSocketUpgradeChannel(
                        responder: responder, configuration: .init(http1: http1, ws: .init(maxFrameSize: PreviewProxy.maximumFrame)),
                        shouldUpgrade: { head, _, logger in
                            if PreviewTarget.match(host: head.authority, uri: head.path ?? "/", domain: previewDomain) == nil,
                                let answer = await sockets.shouldUpgrade(head, logger: logger)
                            {
                                return answer
                            }
                            return await preview.shouldUpgrade(head, logger: logger)
                        }),
                    peers: peers, limits: limits)
            },
            configuration: .init(
                address: .hostname(host, port: port), serverName: "atolld",
                availableConnectionsDelegate: MaximumAvailableConnections(limits.effectiveTotal(descriptorLimit: descriptorLimit))),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }
}
