import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Which sandbox port a request is for: from the Host (`{port}-{id}.{preview domain}`, so a
/// browser at `http://3000-abc.localhost:3986/` needs no DNS set-up: `*.localhost` is loopback)
/// or from the path (`/preview/{id}/{port}/…`, for clients that cannot choose a Host).
struct PreviewTarget: Equatable {
    var sandbox: SandboxID
    var port: Int
    /// The path and query to ask the sandbox for.
    var uri: String
    /// Where the proxy's cookie applies.
    var cookiePath: String

    static let pathPrefix = "/preview/"

    static func match(host: String?, uri: String, domain: String) -> PreviewTarget? {
        if let host = host?.lowercased() {
            // Without the port; a bracketed IPv6 literal is never a preview host.
            let name = host.hasPrefix("[") ? host : String(host.split(separator: ":", maxSplits: 1).first ?? "")
            let suffix = "." + domain.lowercased()
            if name.hasSuffix(suffix), let target = parse(String(name.dropLast(suffix.count)), uri: uri, cookiePath: "/") { return target }
        }
        guard uri.hasPrefix(pathPrefix) else { return nil }
        let rest = uri.dropFirst(pathPrefix.count)
        let parts = rest.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let id = try? SandboxID(String(parts[0])) else { return nil }
        let portText = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard let port = Int(portText), (1...65535).contains(port) else { return nil }
        let prefix = "\(pathPrefix)\(id.rawValue)/\(portText)"
        var forwarded = String(uri.dropFirst(prefix.count))
        if !forwarded.hasPrefix("/") { forwarded = "/" + forwarded }
        return PreviewTarget(sandbox: id, port: port, uri: forwarded, cookiePath: prefix)
    }

    /// `{port}-{id}`
    static func parse(_ label: String, uri: String, cookiePath: String) -> PreviewTarget? {
        guard let dash = label.firstIndex(of: "-"), let port = Int(label[..<dash]), (1...65535).contains(port),
            let id = try? SandboxID(String(label[label.index(after: dash)...]))
        else { return nil }
        return PreviewTarget(sandbox: id, port: port, uri: uri.isEmpty ? "/" : uri, cookiePath: cookiePath)
    }
}

/// Serves preview URLs: a reverse proxy to a port of a sandbox, in front of every other route.
///
/// It connects only to the sandbox's own address (from its record, whatever the Host says), in
/// the network namespace that holds the sandbox bridge; a sandbox that is not public needs its
/// token or a signed token (header `x-daytona-preview-token`, the query parameter
/// `atoll-preview-token` — then remembered in a cookie — or that cookie). Bodies stream both
/// ways; each request counts as activity. A stopped sandbox is a 503 and a port nothing listens on
/// a 502, at once, with a page that says so.
struct PreviewProxy: RouterMiddleware {
    typealias Context = AtollContext
    let manager: SandboxManager
    let tokens: PreviewTokens
    let domain: String

    static let tokenHeader = "x-daytona-preview-token"
    static let tokenParameter = "atoll-preview-token"
    /// How long the sandbox gets to accept a connection.
    static let connectTimeout = 5.0
    /// How long the sandbox's server gets to start its answer once the request is sent (a
    /// streaming answer may then take as long as it likes): `ATOLLD_PREVIEW_ANSWER_TIMEOUT`.
    var answerTimeout: Int64 = ServerSettings.defaultPreviewAnswerTimeout

    func handle(_ request: Request, context: AtollContext, next: (Request, AtollContext) async throws -> Response) async throws -> Response {
        // Every request passes here (create and exec too): only one that can be a preview is parsed.
        guard request.uri.path.hasPrefix(PreviewTarget.pathPrefix) || request.head.authority?.lowercased().contains(".\(domain)") == true,
            let target = PreviewTarget.match(host: request.head.authority, uri: request.uri.description, domain: domain)
        else {
            return try await next(request, context)
        }
        return await respond(request, target, context)
    }

    /// Where an admitted preview request goes.
    struct Admitted {
        var sandbox: Sandbox
        var address: String
        var namespacePath: String?
        /// The request's path and query without the token parameter.
        var uri: String
        /// The token, when it came as a query parameter (remembered in a cookie).
        var queryToken: String?
    }

    /// Whether a request for `target` may go through: the sandbox exists, the token opens it (or
    /// it is public), it runs and has an address of its own on the sandbox subnet. Otherwise the
    /// page that says why. Shared by plain requests and WebSocket upgrades.
    func admit(_ target: PreviewTarget, headers: HTTPFields) -> Result<Admitted, PreviewRefusal> {
        let what = "port \(target.port) of sandbox \(target.sandbox)"
        guard let sandbox = try? manager.sandbox(id: target.sandbox) else {
            return .failure(PreviewRefusal(.notFound, "No such sandbox", "There is no sandbox \(target.sandbox)."))
        }
        let (uri, queryToken) = Self.takeToken(from: target.uri)
        let offered = queryToken ?? headers[HTTPField.Name(Self.tokenHeader)!] ?? Self.cookie(headers, name: cookieName(target))
        if !sandbox.isPublic {
            guard let offered, tokens.opens(offered, sandbox: sandbox.id, port: target.port, now: Date().timeIntervalSince1970) else {
                return .failure(
                    PreviewRefusal(
                        .unauthorized, "Preview token needed",
                        "The preview of \(what) needs its token: send it in the \(Self.tokenHeader) header or the \(Self.tokenParameter) query parameter (from the preview-url call), or make the sandbox public."
                    ))
            }
        }
        guard sandbox.state == .started else {
            return .failure(
                PreviewRefusal(.serviceUnavailable, "Sandbox not running", "Sandbox \(sandbox.id) is \(sandbox.state.rawValue): start it to reach \(what)."))
        }
        // Only a sandbox's own slot on the sandbox subnet (never its gateway, the host): a
        // damaged record cannot turn the proxy toward another network.
        guard let network = manager.configuration.driver.network, let text = sandbox.address, let parsed = IPv4Address(text),
            network.subnet.slot(of: parsed) != nil
        else {
            return .failure(
                PreviewRefusal(
                    .serviceUnavailable, "No network", "Sandbox \(sandbox.id) has no network address (the host runs sandboxes with ATOLL_NETWORK=none)."))
        }
        return .success(Admitted(sandbox: sandbox, address: parsed.description, namespacePath: network.namespacePath, uri: uri, queryToken: queryToken))
    }

    /// A connected socket to the sandbox's port. The socket is made in the sandbox network's
    /// namespace on the work pool (a short setns on a thread of its own); the connect itself is
    /// polled from here, so a port that never answers holds no thread while it is waited for.
    func connect(_ admitted: Admitted, port: Int) async throws -> OwnedFD {
        let (socket, connected) = try await WorkPool.shared.run {
            try TCPConnection.start(address: admitted.address, port: UInt16(port), namespacePath: admitted.namespacePath)
        }
        if connected { return socket }
        let target = "\(admitted.address):\(port)"
        let deadline = ContinuousClock.now + .milliseconds(Int(Self.connectTimeout * 1000))
        var pause = Duration.milliseconds(1)
        while try !TCPConnection.finished(socket, target: target) {
            guard ContinuousClock.now < deadline else { throw AtollError(.unavailable, "connecting to \(target) timed out after \(Self.connectTimeout) s") }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(50))
        }
        return socket
    }

    func respond(_ request: Request, _ target: PreviewTarget, _ context: AtollContext) async -> Response {
        let what = "port \(target.port) of sandbox \(target.sandbox)"
        let admitted: Admitted
        switch admit(target, headers: request.headers) {
        case .failure(let refusal): return refusal.page
        case .success(let value): admitted = value
        }
        let (uri, queryToken) = (admitted.uri, admitted.queryToken)
        try? await manager.touch(admitted.sandbox.id.rawValue, organizationId: admitted.sandbox.organizationId)
        let upstream: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            let socket = try await connect(admitted, port: target.port)
            upstream = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).withConnectedSocket(socket.take()) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            return Self.page(.badGateway, "Nothing listens there", "Nothing accepts connections on \(what).")
        }
        let exchange = UpstreamExchange(upstream)
        do {
            let head = try await exchange.send(request, uri: uri, forwardedHost: request.head.authority, answerTimeout: answerTimeout)
            var headers = HTTPFields()
            for (name, value) in head.headers where !Self.hopByHop(name, in: head.headers) {
                if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
            }
            if let queryToken {
                headers.append(
                    HTTPField(name: .setCookie, value: "\(cookieName(target))=\(queryToken); Path=\(target.cookiePath); HttpOnly; SameSite=Lax"))
            }
            return Response(
                status: HTTPResponse.Status(code: Int(head.status.code), reasonPhrase: head.status.reasonPhrase), headers: headers,
                body: ResponseBody { writer in
                    defer { exchange.close() }
                    while let chunk = try await exchange.nextBodyChunk() { try await writer.write(chunk) }
                    try await writer.finish(nil)
                })
        } catch UpstreamExchange.Failure.noAnswer(let seconds) {
            exchange.close()
            return Self.page(.gatewayTimeout, "No answer", "\(what) did not answer within \(seconds) s.")
        } catch {
            exchange.close()
            return Self.page(.badGateway, "Bad answer", "\(what) did not answer with HTTP.")
        }
    }

    /// Per sandbox and port, so path-form previews of several sandboxes under one host keep
    /// their own tokens.
    func cookieName(_ target: PreviewTarget) -> String { "atoll-preview-\(target.sandbox)-\(target.port)" }

    /// The URI without the token parameter, and the token if it was there.
    static func takeToken(from uri: String) -> (uri: String, token: String?) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, nil) }
        var token: String?
        let kept = uri[uri.index(after: mark)...].split(separator: "&").filter { pair in
            guard pair.hasPrefix(tokenParameter + "=") else { return true }
            token = String(pair.dropFirst(tokenParameter.count + 1))
            return false
        }
        let path = String(uri[..<mark])
        return (kept.isEmpty ? path : path + "?" + kept.joined(separator: "&"), token)
    }

    static func cookie(_ headers: HTTPFields, name: String) -> String? {
        for header in headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix(name + "=") { return String(trimmed.dropFirst(name.count + 1)) }
            }
        }
        return nil
    }

    /// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and the
    /// proxy's own token header: never passed on.
    static func hopByHop(_ name: String, in headers: HTTPHeaders) -> Bool {
        let lower = name.lowercased()
        if [
            "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate",
            tokenHeader,
        ].contains(lower) {
            return true
        }
        return headers["connection"].contains { $0.lowercased().split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == lower } }
    }

    /// A short page saying why the preview cannot be shown (browsers render it; scripts get the status).
    static func page(_ refusal: PreviewRefusal) -> Response { page(refusal.status, refusal.title, refusal.message) }

    /// A short page saying why the preview cannot be shown (browsers render it; scripts get the status).
    static func page(_ status: HTTPResponse.Status, _ title: String, _ message: String) -> Response {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let html = """
            <!doctype html><html lang="en"><meta charset="utf-8"><title>\(escape(title))</title>\
            <body style="font-family:sans-serif;margin:3em"><h1>\(status.code) \(escape(title))</h1><p>\(escape(message))</p>\
            <p><small>Atoll preview proxy</small></p></body></html>

            """
        return Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}

/// Why a preview request is refused: its status and the page's words.
struct PreviewRefusal: Error {
    var status: HTTPResponse.Status
    var title: String
    var message: String

    init(_ status: HTTPResponse.Status, _ title: String, _ message: String) {
        (self.status, self.title, self.message) = (status, title, message)
    }

    var page: Response { PreviewProxy.page(status, title, message) }
}

/// One request/response exchange with a sandbox's server over a connection of its own.
///
/// Hummingbird writes a response's head before it runs the body closure, and the body closure
/// runs after the handler returns, so the upstream response has to be read in two steps from two
/// places: its head in the handler, its body in the body closure. NIOAsyncChannel's scoped
/// `executeThenClose` cannot span both, hence the channel's streams used directly and closed
/// here explicitly (`close()`, called by the body closure or on failure, and in any case when
/// the exchange goes away — a client that leaves before the body never runs the closure). The
/// outbound writer is finished once the request is sent: NIO requires that before it goes away.
final class UpstreamExchange: @unchecked Sendable {
    // @unchecked: the handler uses the exchange first, then the body closure; never both at once.
    let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
    var iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator

    enum Failure: Error {
        case noAnswer(seconds: Int64)
    }

    init(_ channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>) {
        self.channel = channel
        iterator = channel.inbound.makeAsyncIterator()
    }

    /// Sends the request (its body streamed) and reads the response head.
    func send(_ request: Request, uri: String, forwardedHost: String?, answerTimeout: Int64) async throws -> HTTPResponseHead {
        var headers = HTTPHeaders()
        var length: String?
        var chunked = false
        var fields: [(String, String)] = []
        for field in request.headers { fields.append((field.name.canonicalName, field.value)) }
        let original = HTTPHeaders(fields)
        for (name, value) in fields {
            switch name {
            case "content-length": length = value
            case "transfer-encoding": chunked = value.lowercased().contains("chunked")
            default: if !PreviewProxy.hopByHop(name, in: original) { headers.add(name: name, value: value) }
            }
        }
        if let forwardedHost { headers.replaceOrAdd(name: "x-forwarded-host", value: forwardedHost) }
        headers.replaceOrAdd(name: "x-forwarded-proto", value: "http")
        // One exchange per connection: the sandbox's server closes it after its answer.
        headers.replaceOrAdd(name: "connection", value: "close")
        if let length {
            headers.replaceOrAdd(name: "content-length", value: length)
        } else if chunked {
            headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        } else {
            headers.replaceOrAdd(name: "content-length", value: "0")
        }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue), uri: uri, headers: headers)
        try await channel.outbound.write(.head(head))
        for try await chunk in request.body { try await channel.outbound.write(.body(.byteBuffer(chunk))) }
        try await channel.outbound.write(.end(nil))
        channel.outbound.finish()
        // A server that never answers: the connection is closed after the deadline, which ends
        // the wait below.
        let timedOut = NIOLockedValueBox(false)
        let seconds = answerTimeout
        let timer = channel.channel.eventLoop.scheduleTask(in: .seconds(seconds)) { [channel] in
            timedOut.withLockedValue { $0 = true }
            channel.channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            while let part = try await iterator.next() {
                // 1xx interim answers (100 Continue) are not passed on; the final head follows.
                if case .head(let head) = part, head.status.code >= 200 { return head }
            }
        } catch  where timedOut.withLockedValue({ $0 }) {
            throw Failure.noAnswer(seconds: seconds)
        }
        if timedOut.withLockedValue({ $0 }) { throw Failure.noAnswer(seconds: seconds) }
        throw AtollError(.unavailable, "the connection closed before an answer")
    }

    /// The next piece of the response body; nil at its end.
    func nextBodyChunk() async throws -> ByteBuffer? {
        while let part = try await iterator.next() {
            switch part {
            case .body(let chunk): return chunk
            case .end: return nil
            case .head: continue
            }
        }
        return nil
    }

    func close() {
        channel.outbound.finish()
        channel.channel.close(promise: nil)
    }

    deinit { close() }
}
