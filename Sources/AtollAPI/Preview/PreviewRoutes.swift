import AtollCore
import AtollRuntime
import AtollStore
import AtollWire
import Foundation
import Hummingbird

/// Daytona's preview-link calls under `/api/sandbox/{idOrName}`: the sandbox's preview URL and
/// token, signed URLs with an expiry (and expiring them early), and making a sandbox public.
/// The proxy that serves the URLs is `PreviewProxy`.
struct PreviewRoutes {
    let manager: SandboxManager
    let server: ServerSettings
    let tokens: PreviewTokens

    struct PreviewURLBody: Encodable {
        var sandboxId: String
        var url: String
        var token: String
    }

    struct SignedPreviewURLBody: Encodable {
        var sandboxId: String
        var port: Int
        var token: String
        var url: String
    }

    /// Daytona's default lifetime of a signed URL, and the longest Atoll hands out (a day).
    static let signedDefaultSeconds = 60
    static let signedMaximumSeconds = 86400

    func register(_ api: RouterGroup<AtollContext>) {
        api.get("sandbox/:idOrName/ports/:port/preview-url") { request, context in
            let (sandbox, port) = try await target(context)
            return try JSON.response(
                PreviewURLBody(sandboxId: sandbox.id.rawValue, url: server.previewURL(sandbox.id, port: port, request), token: tokens.token(for: sandbox.id)))
        }
        api.get("sandbox/:idOrName/ports/:port/signed-preview-url") { request, context in
            let (sandbox, port) = try await target(context)
            let seconds = try SandboxRoutes.integerQuery(
                request, "expiresInSeconds", default: Self.signedDefaultSeconds, range: 1...Self.signedMaximumSeconds)
            let token = tokens.signedToken(for: sandbox.id, port: port, expires: Int(Date().timeIntervalSince1970) + seconds)
            let url = server.previewURL(sandbox.id, port: port, request) + "/?\(PreviewProxy.tokenParameter)=\(token)"
            return try JSON.response(SignedPreviewURLBody(sandboxId: sandbox.id.rawValue, port: port, token: token, url: url))
        }
        api.post("sandbox/:idOrName/ports/:port/signed-preview-url/:token/expire") { _, context in
            let (sandbox, port) = try await target(context)
            let token = try context.parameters.require("token")
            guard let expires = tokens.signedExpiry(token, sandbox: sandbox.id, port: port) else {
                throw AtollError(.notFound, "\(token.prefix(64)) is not a signed preview token of port \(port) of sandbox \(sandbox.id)")
            }
            let now = Date().timeIntervalSince1970
            if Double(expires) > now { try manager.database.revokePreviewToken(token, expiresAt: Double(expires), now: now) }
            return JSON.empty(.ok)
        }
        api.post("sandbox/:idOrName/public/:isPublic") { request, context in
            let text = try context.parameters.require("isPublic")
            guard let isPublic = Bool(text) else { throw AtollError(.invalidArgument, "isPublic must be true or false, got \"\(text.prefix(16))\"") }
            let sandbox = try await manager.setPublic(try context.parameters.require("idOrName"), isPublic, organizationId: try context.organization())
            return try JSON.response(server.dto(sandbox, request))
        }
    }

    /// The path's sandbox (of the caller's organization) and port.
    func target(_ context: AtollContext) async throws -> (Sandbox, Int) {
        let text = try context.parameters.require("port")
        guard let port = Int(text), (1...65535).contains(port) else {
            throw AtollError(.invalidArgument, "port must be between 1 and 65535, got \"\(text.prefix(16))\"")
        }
        return (try await manager.get(try context.parameters.require("idOrName"), organizationId: try context.organization()), port)
    }
}
