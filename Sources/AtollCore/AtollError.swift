/// The one error type of Atoll: a stable code, a message that names what was wrong, and an
/// optional underlying cause.
///
/// Codes are stable strings (they appear in API responses and scripts) and map one-to-one to an
/// HTTP status, so the CLI, the library and the API agree on what a failure means.
public struct AtollError: Error, Sendable, CustomStringConvertible, Equatable {
    /// A stable error code. New codes can be added without breaking callers.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The wire form, e.g. `"invalid_argument"`.
        public let rawValue: String
        /// The HTTP status an API response carries for this code.
        public let httpStatus: Int

        private init(_ rawValue: String, _ httpStatus: Int) {
            self.rawValue = rawValue
            self.httpStatus = httpStatus
        }

        public var description: String { rawValue }

        /// A request parameter is malformed or out of range (HTTP 400).
        public static let invalidArgument = Code("invalid_argument", 400)
        /// The sandbox, snapshot or file does not exist (HTTP 404).
        public static let notFound = Code("not_found", 404)
        /// The operation conflicts with the current state, e.g. exec in a stopped sandbox (HTTP 409).
        public static let conflict = Code("conflict", 409)
        /// No valid credentials were presented (HTTP 401).
        public static let unauthenticated = Code("unauthenticated", 401)
        /// The request body is larger than allowed (HTTP 413).
        public static let tooLarge = Code("payload_too_large", 413)
        /// The operation is not permitted, e.g. a path outside the sandbox (HTTP 403).
        public static let forbidden = Code("forbidden", 403)
        /// A deadline passed (HTTP 408).
        public static let timeout = Code("timeout", 408)
        /// The caller has too many operations running at once (HTTP 429).
        public static let tooManyRequests = Code("too_many_requests", 429)
        /// A quota of the caller's organization would be exceeded (HTTP 403).
        public static let quotaExceeded = Code("quota_exceeded", 403)
        /// A host resource is exhausted: id ranges, loop devices, disk space (HTTP 503).
        public static let resourceExhausted = Code("resource_exhausted", 503)
        /// The host lacks a prerequisite: privileges, a kernel feature, the default snapshot (HTTP 503).
        public static let unavailable = Code("unavailable", 503)
        /// A system call or host tool failed; the message names the call and the path (HTTP 500).
        public static let system = Code("system_error", 500)
        /// A bug or an inconsistent persisted state (HTTP 500).
        public static let `internal` = Code("internal_error", 500)

        /// Every code, for documentation and tests.
        public static let all: [Code] = [
            .invalidArgument, .unauthenticated, .notFound, .conflict, .forbidden, .timeout, .tooManyRequests, .quotaExceeded, .tooLarge,
            .resourceExhausted, .unavailable, .system, .internal,
        ]
    }

    public let code: Code
    public let message: String
    /// A lower-level description of the cause, if any (not compared for equality).
    public let cause: String?

    public init(_ code: Code, _ message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }

    public static func == (lhs: AtollError, rhs: AtollError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    /// Whether `error` is an `AtollError` with `code`.
    public static func has(_ code: Code, _ error: any Error) -> Bool {
        (error as? AtollError)?.code == code
    }
}

extension AtollError {
    /// A create or rename whose name is taken in the organization.
    public static func nameTaken(_ name: String) -> AtollError {
        AtollError(.conflict, "a sandbox named \"\(name)\" already exists")
    }

    /// Whether this is `nameTaken`.
    public var isNameTaken: Bool { code == .conflict && message.hasPrefix("a sandbox named \"") }
}
