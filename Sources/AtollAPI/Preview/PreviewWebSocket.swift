import AtollCore
import AtollLinux
import AtollRuntime
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// WebSocket upgrades through the preview proxy: the upgrade is admitted like any preview
/// request (token, running sandbox, its own address), the sandbox's server is asked for the same
/// upgrade, and only when it agrees does atolld answer the client's with 101; then frames are
/// relayed both ways until either side closes. An upgrade that cannot go through is closed at
/// once with a code and reason that say why (see `shouldUpgrade`).
extension PreviewProxy {
    /// The largest frame relayed (either way).
    static let maximumFrame = 1 << 20

    enum UpstreamUpgrade: Sendable {
        case upgraded(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, subprotocol: String?)
        case refused
    }

    /// Hummingbird's upgrade decision for every request that asks for one. A request that is
    /// not a preview is declined (Hummingbird answers 400). A preview that cannot go through is
    /// accepted and closed at once with a close code of 4000 + the HTTP status the same request
    /// would get (4401 no token, 4404 no such sandbox, 4503 not running, 4502 nothing there or no
    /// WebSocket there) and the reason: a declined upgrade could only be an empty 400.
    func shouldUpgrade(_ head: HTTPRequest, logger: Logger) async -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        guard let target = PreviewTarget.match(host: head.authority, uri: head.path ?? "/", domain: domain) else {
            return Self.notServed(head)
        }
        let admitted: Admitted
        switch admit(target, headers: head.headerFields) {
        case .failure(let refusal): return Self.refuse(refusal)
        case .success(let value): admitted = value
        }
        let upstream: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
        let subprotocol: String?
        let what = "port \(target.port) of sandbox \(target.sandbox)"
        let notWebSocket = PreviewRefusal(.badGateway, "", "the server on \(what) does not accept a WebSocket at \(admitted.uri.prefix(40))")
        let socket: OwnedFD
        do {
            socket = try await connect(admitted, port: target.port)
        } catch {
            return Self.refuse(PreviewRefusal(.badGateway, "", "nothing accepts connections on \(what)"))
        }
        do {
            switch try await Self.upgrade(socket, uri: admitted.uri, head: head) {
            case .refused: return Self.refuse(notWebSocket)
            case .upgraded(let channel, let chosen): (upstream, subprotocol) = (channel, chosen)
            }
        } catch {
            // Any other answer than a valid 101 (NIO fails the negotiation on some).
            logger.notice("preview websocket: \(error)", metadata: ["sandbox": .string(target.sandbox.rawValue), "port": "\(target.port)"])
            return Self.refuse(notWebSocket)
        }
        try? await manager.touch(admitted.sandbox.id.rawValue, organizationId: admitted.sandbox.organizationId)
        var headers = HTTPFields()
        if let subprotocol, let name = HTTPField.Name("Sec-WebSocket-Protocol") { headers[name] = subprotocol }
        let manager = self.manager
        let sandbox = admitted.sandbox
        return .upgrade(headers) { inbound, outbound, _ in
            try await upstream.executeThenClose { upstreamInbound, upstreamOutbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // Client to sandbox: data frames as they come, masked (a client's frames must be).
                    group.addTask {
                        for try await frame in inbound {
                            let opcode: WebSocketOpcode =
                                switch frame.opcode {
                                case .text: .text
                                case .binary: .binary
                                case .continuation: .continuation
                                }
                            try await upstreamOutbound.write(WebSocketFrame(fin: frame.fin, opcode: opcode, maskKey: .random(), data: frame.data))
                        }
                        try await upstreamOutbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: ByteBuffer()))
                    }
                    // Sandbox to client: data frames on, pings answered here, a close ends it.
                    group.addTask {
                        for try await frame in upstreamInbound {
                            switch frame.opcode {
                            case .text, .binary, .continuation:
                                try await outbound.write(.custom(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)))
                            case .ping:
                                try await upstreamOutbound.write(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData))
                            case .connectionClose:
                                return
                            default:
                                continue
                            }
                        }
                    }
                    // Whichever side ends first ends the relay.
                    try await group.next()
                    group.cancelAll()
                }
            }
            try? await manager.touch(sandbox.id.rawValue, organizationId: sandbox.organizationId)
        }
    }

    /// A WebSocket Atoll does not serve under `/api` or `/toolbox` (PTYs, log following, the
    /// interpreter): closed at once with 4501 naming it, as a plain request gets a 501. Socket.IO
    /// (the SDK's optional event channel) is declined quietly; anything else is not Atoll's.
    static func notServed(_ head: HTTPRequest) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let path = String((head.path ?? "/").split(separator: "?", maxSplits: 1).first ?? "/")
        guard path.hasPrefix("/api/") || path.hasPrefix("/toolbox/"), !path.hasPrefix("/api/socket.io") else { return .dontUpgrade }
        return refuse(PreviewRefusal(.notImplemented, "", "WebSocket \(path.prefix(80)) is not implemented by Atoll"))
    }

    /// Accepts the upgrade only to close it at once with the refusal's code and reason (a close
    /// reason has at most 123 bytes).
    static func refuse(_ refusal: PreviewRefusal) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        .upgrade([:]) { _, outbound, _ in await WebSocketRefusal.close(outbound, status: refusal.status.code, message: refusal.message) }
    }

    /// Asks the sandbox's server, over `socket`, for the WebSocket upgrade the client asked for
    /// (its path, subprotocols, origin and cookies passed on).
    static func upgrade(_ socket: OwnedFD, uri: String, head: HTTPRequest) async throws -> UpstreamUpgrade {
        var headers = HTTPHeaders()
        for field in head.headerFields {
            let name = field.name.canonicalName
            if ["host", "origin", "cookie", "sec-websocket-protocol", "user-agent"].contains(name) { headers.add(name: name, value: field.value) }
        }
        if !headers.contains(name: "host") { headers.add(name: "host", value: head.authority ?? "localhost") }
        let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)
        let negotiation = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).withConnectedSocket(socket.take()) {
            channel -> EventLoopFuture<EventLoopFuture<UpstreamUpgrade>> in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<UpstreamUpgrade>(maxFrameSize: maximumFrame) { channel, response in
                    channel.eventLoop.makeCompletedFuture {
                        let relay = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel)
                        return .upgraded(relay, subprotocol: response.headers.first(name: "sec-websocket-protocol"))
                    }
                }
                let configuration = NIOTypedHTTPClientUpgradeConfiguration<UpstreamUpgrade>(
                    upgradeRequestHead: request, upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in
                        channel.close(promise: nil)
                        return channel.eventLoop.makeSucceededFuture(.refused)
                    })
                var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                // Frames the server sends right after its 101 (often in the same packet) are the
                // WebSocket's first: they go on to the frame decoder, not away with the HTTP decoder.
                pipeline.leftOverBytesStrategy = .forwardBytes
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
            }
        }
        return try await negotiation.get()
    }
}
