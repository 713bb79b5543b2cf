import AtollCore
public import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
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

/// Per connection: the per-peer cap, and the stall deadlines of request bodies and responses.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let peers: PeerCounter
    let limits: ConnectionLimits
    var peer: String?
    var bodyDeadline: Scheduled<Void>?
    var writeDeadline: Scheduled<Void>?

    init(peers: PeerCounter, limits: ConnectionLimits) {
        self.peers = peers
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if peers.open(address, limit: limits.perPeer) {
            peer = address
        } else {
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let peer { peers.close(peer) }
        peer = nil
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
