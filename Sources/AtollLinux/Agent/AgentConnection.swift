public import AtollCore
import CRuntime
import Glibc

/// One connection to a sandbox's agent (see `atoll_agent.h`): a request, then its replies.
///
/// Every call blocks (with a deadline), so callers run it off Swift's cooperative threads — on the
/// runtime's work pool or a pump thread of its own.
public final class AgentConnection: @unchecked Sendable {
    // @unchecked: one owner uses a connection at a time; the descriptor is closed once.
    public let socket: OwnedFD
    /// The sandbox, for messages.
    public let sandbox: String

    /// The socket's name in the sandbox's directory.
    public static let socketName = "agent.sock"

    init(socket: OwnedFD, sandbox: String) {
        self.socket = socket
        self.sandbox = sandbox
    }

    /// Connects to the agent of the sandbox whose directory is `directory` (PID 1 listens there).
    public static func connect(directory: String, sandbox: String) throws(AtollError) -> AgentConnection {
        let dir = open(directory, ATOLL_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw AtollError(.conflict, "sandbox \(sandbox) is not running (it has no directory)") }
        defer { _ = Glibc.close(dir) }
        var fd: Int32 = -1
        var failure = atoll_error()
        guard atoll_agent_connect(dir, socketName, &fd, &failure) == 0 else {
            switch failure.err {
            case ENOENT:
                throw AtollError(.conflict, "sandbox \(sandbox) has no agent socket: it was started by an older Atoll; stop and start it")
            case ECONNREFUSED:
                throw AtollError(.conflict, "sandbox \(sandbox) is not running (nothing listens on its agent socket)")
            case EAGAIN:
                throw AtollError(.resourceExhausted, "sandbox \(sandbox)'s agent has too many requests waiting; try again")
            default:
                throw SystemError.error(failure)
            }
        }
        return AgentConnection(socket: OwnedFD(fd), sandbox: sandbox)
    }

    /// Sends a message, with descriptors the agent receives (SCM_RIGHTS).
    public func send(_ message: AgentMessage, descriptors: [Int32] = []) throws(AtollError) {
        let bytes = try message.encode()
        var failure = atoll_error()
        let rc = bytes.withUnsafeBytes { raw in
            descriptors.withUnsafeBufferPointer { fds in
                atoll_agent_send(socket.raw, raw.baseAddress, raw.count, fds.baseAddress, Int32(fds.count), &failure)
            }
        }
        guard rc == 0 else {
            if failure.err == EPIPE || failure.err == ECONNRESET {
                throw AtollError(.conflict, "sandbox \(sandbox)'s agent closed the connection (the sandbox stopped?)")
            }
            throw SystemError.error(failure)
        }
    }

    /// The next message, or nil when the agent has closed the connection. `timeout` in seconds
    /// (nil: no limit); passing it is a `timeout` error naming the sandbox and `waitingFor`.
    /// Descriptors sent along are closed.
    public func receive(timeout: Double?, waitingFor: String) throws(AtollError) -> AgentMessage? {
        try receiveWithDescriptor(timeout: timeout, waitingFor: waitingFor)?.message
    }

    /// The next message and the descriptor sent along with it, if any (a terminal's master end,
    /// an opened FIFO). The caller owns the descriptor and checks what it is: it comes from
    /// inside the sandbox.
    public func receiveWithDescriptor(timeout: Double?, waitingFor: String) throws(AtollError) -> (message: AgentMessage, descriptor: OwnedFD?)? {
        var failure = atoll_error()
        let ms = timeout.map { Int32(max(0, min(Double(Int32.max), ($0 * 1000).rounded(.up)))) } ?? -1
        let size = atoll_agent_peek(socket.raw, ms, &failure)
        if size == -Int(ETIMEDOUT) {
            throw AtollError(.timeout, "sandbox \(sandbox)'s agent did not answer within \(Int(timeout ?? 0)) s (\(waitingFor))")
        }
        guard size >= 0 else { throw SystemError.error(failure) }
        if size == 0 { return nil }
        guard size <= AgentMessage.maximumSize else {
            throw AtollError(.internal, "sandbox \(sandbox)'s agent sent a message of \(size) bytes (at most \(AgentMessage.maximumSize))")
        }
        var buffer = [UInt8](repeating: 0, count: size)
        var fds: [Int32] = [-1]
        var count: Int32 = 1
        let got = buffer.withUnsafeMutableBytes { raw in
            fds.withUnsafeMutableBufferPointer { atoll_agent_recv(socket.raw, raw.baseAddress, raw.count, $0.baseAddress, &count, &failure) }
        }
        let descriptor = count > 0 ? OwnedFD(fds[0]) : nil
        guard got == size else {
            descriptor?.close()
            if got < 0 { throw SystemError.error(failure) }
            throw AtollError(.internal, "sandbox \(sandbox)'s agent: a message of \(size) bytes arrived as \(got)")
        }
        do {
            return (try AgentMessage.decode(buffer), descriptor)
        } catch {
            descriptor?.close()
            throw error
        }
    }

    public func close() { socket.close() }
}

/// What an `ERROR` reply of the agent means, as an `AtollError`. Paths in it are the sandbox's
/// own (the agent sees nothing else), so the message is safe to show to the caller.
public enum AgentFailure {
    /// `fileSemantics`: phrase the common errnos as file errors (`/x: no such file or directory`).
    public static func error(_ message: AgentMessage, fileSemantics: Bool = true) -> AtollError {
        let err = Int32(truncatingIfNeeded: message.number(0))
        let call = message.string(0)
        let path = message.string(1)
        let detail = message.string(2)
        if call == "resolve user" || call == "resolve group" {
            return AtollError(err == ENOENT ? .notFound : .invalidArgument, detail)
        }
        guard fileSemantics || !detail.isEmpty else {
            // A program or directory missing *inside the sandbox* is the sandbox's "not found"
            // (the call and errno stay in the cause); a host ENOENT never comes this way.
            let error = SystemError.error(call, path, errno: err)
            return err == ENOENT ? AtollError(.notFound, error.message, cause: error.cause) : error
        }
        let subject = path.isEmpty ? call : path
        let code: AtollError.Code
        var phrase: String
        switch err {
        case ENOENT: (code, phrase) = (.notFound, "no such file or directory")
        case EACCES, EPERM: (code, phrase) = (.forbidden, "permission denied (\(call))")
        case EEXIST: (code, phrase) = (.conflict, "already exists")
        case ENOTEMPTY: (code, phrase) = (.conflict, "is a directory that is not empty (use recursive)")
        case ELOOP: (code, phrase) = (.invalidArgument, "is a symbolic link (\(call) does not follow it)")
        case ENOTDIR: (code, phrase) = (.invalidArgument, "is not a directory (or a symbolic link to one)")
        case EISDIR: (code, phrase) = (.invalidArgument, "is a directory")
        case ENOSPC, EDQUOT: (code, phrase) = (.resourceExhausted, "the sandbox's disk is full")
        case EBUSY: (code, phrase) = (.conflict, "is busy (a mount point?)")
        case EROFS: (code, phrase) = (.forbidden, "is on a read-only filesystem")
        case EINVAL, ENAMETOOLONG, EXDEV: (code, phrase) = (.invalidArgument, SystemError.describe(err))
        case EFBIG: (code, phrase) = (.tooLarge, "is too large")
        case EAGAIN: (code, phrase) = (.resourceExhausted, SystemError.describe(err))
        case ENXIO: (code, phrase) = (.conflict, SystemError.describe(err))
        default: (code, phrase) = (.system, "\(call): \(SystemError.describe(err))")
        }
        if !detail.isEmpty { phrase = code == .system ? "\(call): \(detail) (\(SystemError.name(err)))" : detail }
        return AtollError(code, "\(subject): \(phrase)")
    }
}

/// The listening end PID 1 inherits at spawn (`ATOLL_INIT_LISTENER_FD`).
public enum AgentSocket {
    /// Binds `<directory>/agent.sock` (replacing a stale one): only root on the host can reach the
    /// path (the sandbox directory is 0700), and nothing inside the sandbox can see it at all.
    public static func listen(directory: String) throws(AtollError) -> OwnedFD {
        let dir = open(directory, ATOLL_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw SystemError.last("open", directory) }
        defer { _ = Glibc.close(dir) }
        var fd: Int32 = -1
        var failure = atoll_error()
        guard atoll_agent_listen(dir, AgentConnection.socketName, &fd, &failure) == 0 else { throw SystemError.error(failure) }
        return OwnedFD(fd)
    }
}
