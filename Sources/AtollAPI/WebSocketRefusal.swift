import HummingbirdWebSocket
import NIOWebSocket

/// How a WebSocket Atoll accepted only to refuse ends: a close with 4000 + the HTTP status the
/// same request would get (4404, 4409, …) and the message as the reason, cut to the 123 bytes a
/// close reason may have. Hummingbird can answer a declined upgrade only with an empty 400, so
/// the preview proxy and the toolbox's WebSockets say why this way.
enum WebSocketRefusal {
    static func close(_ outbound: WebSocketOutboundWriter, status: Int, message: String) async {
        var reason = message
        while reason.utf8.count > 123 { reason.removeLast() }
        try? await outbound.close(WebSocketErrorCode(codeNumber: 4000 + status), reason: reason)
    }
}
