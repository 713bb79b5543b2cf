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
        /// The thing exists no longer, e.g. input for a command that has ended (HTTP 410, as
        /// Daytona's daemon answers).
        public static let gone = Code("gone", 410)
        /// A create or rename whose name is taken in the organization (HTTP 409).
        public static let nameTaken = Code("name_taken", 409)
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
        /// A Daytona route or feature Atoll does not serve (HTTP 501), so a client can tell it from
        /// a missing sandbox.
        public static let notImplemented = Code("not_implemented", 501)

        /// Every code, for documentation and tests.
        public static let all: [Code] = [
            .invalidArgument, .unauthenticated, .notFound, .conflict, .gone, .nameTaken, .forbidden, .timeout, .tooManyRequests, .quotaExceeded, .tooLarge,
            .resourceExhausted, .unavailable, .system, .internal, .notImplemented,
        ]
    }

    public let code: Code
    public let message: String
    /// The lower-level error this one stands for, if any (not compared for equality): a failed
    /// system call (`SystemCallError`), a database error, a decoding error. Kept as the error
    /// itself, so callers can ask what it was instead of parsing text.
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        guard let cause, !(cause is any DescribedByMessage) else { return message }
        return "\(message) (\(cause))"
    }

    /// The failed system call behind this error, if it was one.
    public var systemCall: SystemCallError? { cause as? SystemCallError }

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
        AtollError(.nameTaken, "a sandbox named \"\(name)\" already exists")
    }
}

/// A cause whose facts the error's message already states (no need to repeat it).
public protocol DescribedByMessage: Error {}

/// A failed system call: the call, the path it acted on and errno. The cause of every system
/// error, so that a missing file on the host stays a system error (errno `ENOENT`) and only
/// domain code says "not found".
public struct SystemCallError: DescribedByMessage, Sendable, Hashable, CustomStringConvertible {
    public let call: String
    public let path: String
    public let errno: Int32

    public init(call: String, path: String, errno: Int32) {
        (self.call, self.path, self.errno) = (call, path, errno)
    }

    public var description: String { "\(call)(\(path)): errno \(errno)" }
}

/// Marks an error as "the process could not be started" (a missing working directory, an
/// unknown user): a command's own failure, which Daytona reports as exit code -1 with the
/// reason rather than as a failed request.
public struct ProcessStartFailure: DescribedByMessage, Sendable {
    public init() {}
}
