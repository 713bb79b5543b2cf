import AtollCore
public import Hummingbird
import Logging

/// Size limits of request bodies (documented in docs/api.md).
public enum APILimits {
    /// JSON bodies: 4 MiB.
    public static let jsonBody = 4 << 20
    /// A multipart upload (all files of one request together): 1 GiB.
    public static let upload = 1 << 30
    /// What a multipart body may carry beyond its files (boundaries, part headers, path fields),
    /// so that a file of exactly `upload` bytes fits.
    public static let uploadFraming = 1 << 20
    /// One file in a bulk download: 1 GiB.
    public static let download = 1 << 30
}

/// Who made a request, once the key is known.
final class Caller: @unchecked Sendable {
    // @unchecked: written once by the authentication middleware, then read by the same request's task.
    var organizationId: String?
    var isAdmin = false
}

/// The request context: which organization the caller's key belongs to.
public struct AtollContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthMiddleware` from the bearer key.
    public var organizationId: String? {
        get { caller.organizationId }
        nonmutating set { caller.organizationId = newValue }
    }
    /// The key is an administrator's (see `atoll keys create --admin`).
    public var isAdmin: Bool {
        get { caller.isAdmin }
        nonmutating set { caller.isAdmin = newValue }
    }
    /// Shared by every copy of this request's context, so that middleware outside the
    /// authentication (errors, logging, metrics) learns the caller too.
    let caller = Caller()

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { APILimits.jsonBody }

    /// Throws `forbidden` unless the key is an administrator's; `what` names what needed it.
    public func requireAdmin(_ what: String) throws {
        guard isAdmin else {
            throw AtollError(.forbidden, "\(what) belongs to the host, not to an organization: it needs an administrator's key (atoll keys create --admin)")
        }
    }

    /// The authenticated organization (the auth middleware guarantees one on protected routes).
    public func organization() throws -> String {
        guard let organizationId else { throw AtollError(.unauthenticated, "missing or invalid API key") }
        return organizationId
    }
}
