import AtollCore
import Hummingbird
import Logging

/// Size limits of request bodies (documented in the README).
public enum APILimits {
    /// JSON bodies: 4 MiB.
    public static let jsonBody = 4 << 20
    /// A multipart upload (all files of one request together): 1 GiB.
    public static let upload = 1 << 30
    /// One file in a bulk download: 1 GiB.
    public static let download = 1 << 30
}

/// The request context: which organization the caller's key belongs to.
public struct AtollContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthMiddleware` from the bearer key.
    public var organizationId: String?
    /// The key is an administrator's (see `atoll keys create --admin`).
    public var isAdmin = false

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { APILimits.jsonBody }

    /// Throws `forbidden` unless the key is an administrator's; `what` names what needed it.
    public func requireAdmin(_ what: String) throws {
        guard isAdmin else { throw AtollError(.forbidden, "\(what) belongs to the host, not to an organization: it needs an administrator's key (atoll keys create --admin)") }
    }

    /// The authenticated organization (the auth middleware guarantees one on protected routes).
    public func organization() throws -> String {
        guard let organizationId else { throw AtollError(.unauthenticated, "missing or invalid API key") }
        return organizationId
    }
}
