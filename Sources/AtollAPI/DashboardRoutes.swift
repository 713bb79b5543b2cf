import AtollCore
import AtollRuntime
import AtollStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard atolld serves at `/dashboard`: plain HTML, CSS and ES modules from `Dashboard/`,
/// embedded in the binary at build time (the EmbedDashboard plugin). The pages need no key to
/// load; everything they show comes from the API with the key the user signs in with, so
/// tenancy holds as it does for the SDK.
struct DashboardRoutes {
    let manager: SandboxManager

    /// The files by name, decoded once.
    static let assets: [String: ByteBuffer] = dashboardAssetsBase64.compactMapValues { base64 in
        Data(base64Encoded: base64).map { ByteBuffer(bytes: $0) }
    }

    static func contentType(_ name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": return "text/html; charset=utf-8"
        case "js": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        default: return "application/octet-stream"
        }
    }

    /// Everything from atolld itself; WebSockets back to it; no framing by other sites.
    static let policy =
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"

    static func serve(_ name: String) throws -> Response {
        guard let body = assets[name] else { throw AtollError(.notFound, "dashboard file \(name.prefix(64)) not found") }
        var headers = HTTPFields()
        headers[.contentType] = contentType(name)
        headers[.cacheControl] = "no-cache"
        headers[.contentSecurityPolicy] = policy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    func register(_ router: Router<AtollContext>, api: RouterGroup<AtollContext>) {
        router.get("/") { _, _ in Response(status: .found, headers: [.location: "/dashboard"]) }
        router.get("dashboard") { _, _ in try Self.serve("index.html") }
        router.get("dashboard/:file") { _, context in try Self.serve(try context.parameters.require("file")) }
        // Who the key belongs to (the dashboard shows the organization).
        api.get("me") { _, context in
            try JSON.response(Me(organizationId: try context.organization(), admin: context.isAdmin))
        }
        // A sandbox's state changes, oldest first.
        api.get("sandbox/:idOrName/history") { _, context in
            let rows = try await manager.history(try context.parameters.require("idOrName"), organizationId: try context.organization())
            let iso = ISO8601DateFormatter()
            return try JSON.response(
                rows.map { HistoryItem(at: iso.string(from: Date(timeIntervalSince1970: $0.at)), from: $0.fromState, to: $0.toState, reason: $0.reason) })
        }
    }

    struct Me: Encodable {
        var organizationId: String
        var admin: Bool
    }

    struct HistoryItem: Encodable {
        var at: String
        var from: String?
        var to: String
        var reason: String?
    }
}
