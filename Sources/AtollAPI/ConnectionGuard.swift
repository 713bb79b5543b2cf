import AtollCore
public import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Limits that keep unauthenticated peers from exhausting the daemon: how many connections in
/// all and per peer address, how long a request body or a blocked response may stall, and how
/// long a connection may sit idle (which is also how long a request's headers may take).
public struct ConnectionLimits: Sendable {
    /// Connections open at once, in all (the rest wait in the listen backlog).
    public var total: Int
    /// Connections open at once from one peer address; more are closed as they arrive.
    public var perPeer: Int
    /// A connection with no request in progress is closed after this long; a request's headers
    /// must therefore arrive within it (a client that dribbles them is cut off).
    public var idleSeconds: Int64
    /// A request body that sends nothing for this long, or a response the client does not read
    /// for this long, ends the connection.
    public var stallSeconds: Int64
    /// Descriptors kept free for sandboxes and their agents whatever the connections take.
    public var reservedDescriptors: Int

    public init(total: Int = 4096, perPeer: Int = 256, idleSeconds: Int64 = 30, stallSeconds: Int64 = 60, reservedDescriptors: Int = 1024) {
        self.total = total
        self.perPeer = perPeer
        self.idleSeconds = idleSeconds
        self.stallSeconds = stallSeconds
        self.reservedDescriptors = reservedDescriptors
    }

    /// The defaults, with `ATOLL_HTTP_MAX_CONNECTIONS`, `ATOLL_HTTP_MAX_CONNECTIONS_PER_PEER`,
    /// `ATOLL_HTTP_IDLE_SECONDS` and `ATOLL_HTTP_STALL_SECONDS` from the environment.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ConnectionLimits {
        var limits = ConnectionLimits()
        func number(_ key: String, _ fallback: Int) throws -> Int {
            guard let text = environment[key] else { return fallback }
            guard let value = Int(text), value >= 1 else {
                throw AtollError(.invalidArgument, "\(key)=\(text.prefix(32)) is not a positive whole number")
            }
            return value
        }
        limits.total = try number("ATOLL_HTTP_MAX_CONNECTIONS", limits.total)
        limits.perPeer = try number("ATOLL_HTTP_MAX_CONNECTIONS_PER_PEER", limits.perPeer)
        limits.idleSeconds = Int64(try number("ATOLL_HTTP_IDLE_SECONDS", Int(limits.idleSeconds)))
        limits.stallSeconds = Int64(try number("ATOLL_HTTP_STALL_SECONDS", Int(limits.stallSeconds)))
        return limits
    }

    /// The total cap, lowered so that `reservedDescriptors` stay free under the process's
    /// descriptor limit (a quarter of it when the limit is small).
    public func effectiveTotal(descriptorLimit: Int) -> Int {
        let reserve = max(reservedDescriptors, descriptorLimit / 4)
        return max(16, min(total, descriptorLimit - reserve))
    }
}

/// Counts open connections per peer address.
final class PeerCounter: Sendable {
    let counts = Mutex<[String: Int]>([:])

    /// Registers a connection; false when the peer already has `limit` open.
    func open(_ peer: String, limit: Int) -> Bool {
        counts.withLock { counts in
            let now = counts[peer, default: 0]
            guard now < limit else { return false }
            counts[peer] = now + 1
            return true
        }
    }

    func close(_ peer: String) {
        counts.withLock { counts in
            let left = counts[peer, default: 1] - 1
            counts[peer] = left > 0 ? left : nil
        }
    }

    func count(_ peer: String) -> Int { counts.withLock { $0[peer] ?? 0 } }
}

/// First on every connection, on its raw bytes, from the moment it is accepted: the per-peer
/// cap, and a deadline for the first request's headers (idle time). Hummingbird's own HTTP
/// handlers, and `ConnectionGuard`, are only added once a request head has been read (the
/// WebSocket upgrade negotiation comes first), so a connection that sends nothing or dribbles its
/// headers must be cut off here. Afterwards it only passes bytes on (and keeps the peer counted).
final class EarlyConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let peers: PeerCounter
    let limits: ConnectionLimits
    var peer: String?
    var headerDeadline: Scheduled<Void>?
    /// How many bytes of "\r\n\r\n" (the end of the headers) were seen last.
    var matched = 0

    init(peers: PeerCounter, limits: ConnectionLimits) {
        self.peers = peers
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard peers.open(address, limit: limits.perPeer) else {
            context.close(promise: nil)
            return
        }
        peer = address
        let channel = context.channel
        headerDeadline = context.eventLoop.scheduleTask(in: .seconds(limits.idleSeconds)) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let peer { peers.close(peer) }
        peer = nil
        headerDeadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if headerDeadline != nil {
            let terminator: [UInt8] = [13, 10, 13, 10]
            for byte in unwrapInboundIn(data).readableBytesView {
                matched = byte == terminator[matched] ? matched + 1 : (byte == 13 ? 1 : 0)
                if matched == 4 {
                    headerDeadline?.cancel()
                    headerDeadline = nil
                    break
                }
            }
        }
        context.fireChannelRead(data)
    }
}

/// Per request: the stall deadlines of request bodies and responses.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let limits: ConnectionLimits
    var bodyDeadline: Scheduled<Void>?
    var writeDeadline: Scheduled<Void>?

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        writeDeadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head, .body: armBodyDeadline(context)
        case .end:
            bodyDeadline?.cancel()
            bodyDeadline = nil
        }
        context.fireChannelRead(data)
    }

    /// Until the request's end arrives, each part must follow the last within the stall time.
    func armBodyDeadline(_ context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        let channel = context.channel
        bodyDeadline = context.eventLoop.scheduleTask(in: .seconds(limits.stallSeconds)) { channel.close(promise: nil) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            writeDeadline?.cancel()
            writeDeadline = nil
        } else if writeDeadline == nil {
            // The client stopped reading the response: give it the stall time, then hang up.
            let channel = context.channel
            writeDeadline = context.eventLoop.scheduleTask(in: .seconds(limits.stallSeconds)) { channel.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }
}

/// Atoll's server channel: Hummingbird's HTTP/1 channel with WebSocket upgrades, behind an
/// `EarlyConnectionGuard` added the moment a connection is accepted.
struct GuardedServerChannel: ServerChildChannel {
    typealias Value = HTTP1WebSocketUpgradeChannel.Value
    let inner: HTTP1WebSocketUpgradeChannel
    let peers: PeerCounter
    let limits: ConnectionLimits

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(EarlyConnectionGuard(peers: peers, limits: limits), position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}
