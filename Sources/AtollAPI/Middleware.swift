import AtollCore
import AtollStore
import AtollWire
import Foundation
import Hummingbird
import Logging
import NIOCore

/// Turns every error into that JSON body with the status its code maps to, and logs it.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = AtollContext
    let metrics: RequestMetrics
    let redact: HostPathRedaction

    func handle(_ request: Request, context: AtollContext, next: (Request, AtollContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            log(request, context, status: response.status.code, start: start)
            return response
        } catch {
            let error = Self.unmatched(error, request, context)
            let body = Self.body(for: error, request, redact: redact)
            let status = body.statusCode
            log(request, context, status: status, start: start, message: Self.atollError((error as? ToolboxError)?.error ?? error).description)
            return try JSON.response(body, status: HTTPResponse.Status(code: status))
        }
    }

    /// The one error body of every route, whole responses and multipart parts alike: the status
    /// the error's code maps to, its message with host paths redacted, the daemon's code on
    /// toolbox routes (so the SDK raises the right exception).
    static func body(for error: any Error, _ request: Request, redact: HostPathRedaction) -> ErrorBody {
        let atoll = atollError((error as? ToolboxError)?.error ?? error)
        let status = atoll.code.httpStatus
        let toolbox = request.uri.path.hasPrefix("/toolbox")
        return ErrorBody(
            statusCode: status, message: redact(atoll.description), code: (error as? ToolboxError)?.daemonCode ?? atoll.code.rawValue,
            source: toolbox ? "DAYTONA_DAEMON" : "DAYTONA_API", error: reason(status),
            timestamp: ISO8601DateFormatter().string(from: Date()), path: request.uri.path, method: request.method.rawValue)
    }

    /// A request no route matched, under `/api` or `/toolbox`, is a Daytona call Atoll does not
    /// serve: 501 naming it, not the router's 404, which the SDK would report as a missing sandbox.
    static func unmatched(_ error: any Error, _ request: Request, _ context: AtollContext) -> any Error {
        // Atoll's own "not found" is an AtollError; only the router throws HTTPError(.notFound).
        guard let http = error as? HTTPError, http.status == .notFound else { return error }
        let path = request.uri.path
        guard path.hasPrefix("/api/") || path.hasPrefix("/toolbox/") else { return error }
        return AtollError(.notImplemented, "\(request.method.rawValue) \(path.prefix(200)) is not implemented by Atoll")
    }

    /// The reason phrase of a status (Daytona's `error` field).
    static func reason(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 413: return "Payload Too Large"
        case 429: return "Too Many Requests"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        default: return status >= 500 ? "Internal Server Error" : "Error"
        }
    }

    static func atollError(_ error: any Error) -> AtollError {
        switch error {
        case let error as AtollError: return error
        case let error as HTTPError:
            let code: AtollError.Code
            switch error.status.code {
            case 400: code = .invalidArgument
            case 401: code = .unauthenticated
            case 403: code = .forbidden
            case 404: code = .notFound
            case 408: code = .timeout
            case 409: code = .conflict
            case 413: code = .tooLarge
            default: code = error.status.code < 500 ? .invalidArgument : .internal
            }
            return AtollError(code, error.body ?? error.status.reasonPhrase)
        case let error as DecodingError:
            return AtollError(.invalidArgument, "invalid request: \(JSON.describe(error))")
        default:
            return AtollError(.internal, "internal error", cause: error)
        }
    }

    func log(_ request: Request, _ context: AtollContext, status: Int, start: ContinuousClock.Instant, message: String? = nil) {
        let elapsed = ContinuousClock.now - start
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        metrics.record(
            organization: context.organizationId ?? "", route: context.endpointPath ?? "unmatched", method: request.method.rawValue,
            status: status, seconds: ms / 1000)
        var metadata: Logger.Metadata = [
            "method": .string(request.method.rawValue), "path": .string(request.uri.path), "status": .stringConvertible(status),
            "ms": .string(String(format: "%.1f", ms)),
        ]
        if let org = context.organizationId { metadata["org"] = .string(org) }
        if let message { metadata["error"] = .string(message) }
        context.logger.log(level: status >= 500 ? .error : status >= 400 ? .notice : .info, "request", metadata: metadata)
    }
}

/// Every API and toolbox request needs `Authorization: Bearer <key>` with a key of the
/// database; the key's organization is the caller's. Unknown and revoked keys are a 401.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = AtollContext
    let database: SandboxDatabase

    /// The key of an `Authorization: Bearer <key>` header.
    static func bearerKey(_ header: String) throws(AtollError) -> String {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
            throw AtollError(.unauthenticated, "the Authorization header must be \"Bearer <API key>\"")
        }
        return String(parts[1])
    }

    /// Who holds `key`; an unknown or revoked key is a 401.
    static func holder(ofKey key: String, database: SandboxDatabase) throws -> KeyHolder {
        guard let holder = try database.holder(ofKey: key) else { throw AtollError(.unauthenticated, "invalid or revoked API key") }
        return holder
    }

    static let missingKey = AtollError(.unauthenticated, "missing Authorization header: send \"Authorization: Bearer <API key>\"")

    func handle(_ request: Request, context: AtollContext, next: (Request, AtollContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            // A signed file URL (Daytona's download_url / upload_url) stands in for a key.
            if let organization = try SignedFileURL.organization(request, database: database, now: Date().timeIntervalSince1970) {
                context.organizationId = organization
                return try await next(request, context)
            }
            throw Self.missingKey
        }
        let holder = try Self.holder(ofKey: try Self.bearerKey(header), database: database)
        let context = context
        context.organizationId = holder.organizationId
        context.isAdmin = holder.admin
        return try await next(request, context)
    }
}
