public import AtollCore
import CRuntime
import Foundation
import Glibc
import Synchronization

/// A process started by a sandbox's agent: the request goes out with the child's ends of the
/// stdio pipes, the agent resolves the user, sets everything up and reports `STARTED` (or why it
/// could not) before it becomes the process, and a `ProcessIO` pump on a thread of its own runs
/// it to its end (PID 1 reports the exit).
public enum AgentProcess {
    /// How long the agent has to start the process (user lookup, fork, exec).
    public static let startTimeout = 30.0

    /// Runs `request` (an `exec` message) in the sandbox whose directory is `directory`; the pipes'
    /// child ends are handed to the agent. Throws when the process could not start.
    public static func run(
        directory: String, sandbox: String, request: AgentMessage, pipes: StdioPipes, stdin: StdinSource,
        timeout: Double?, captureLimit: Int,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ProcessOutcome {
        try await launch(
            directory: directory, sandbox: sandbox, request: request, pipes: pipes, stdin: stdin, timeout: timeout, captureLimit: captureLimit,
            onOutput: onOutput
        ).wait().get()
    }

    /// Starts a process that runs while the caller talks to it through `input`: with `pipes`, on
    /// those; without, on a new terminal of the sandbox (the request has `ATOLL_EXEC_PTY`), whose
    /// master end the agent sends back. Returns once the process runs; its pump thread delivers
    /// output to `onOutput` and the end to `LiveProcess.wait()`.
    public static func startLive(
        directory: String, sandbox: String, request: AgentMessage, pipes: StdioPipes?, input: LiveInput,
        timeout: Double?, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> LiveProcess {
        do {
            return try await launch(
                directory: directory, sandbox: sandbox, request: request, pipes: pipes, stdin: .live(input), timeout: timeout, captureLimit: 0,
                onOutput: onOutput)
        } catch {
            input.finish()  // what the caller queues now is refused
            throw error
        }
    }

    /// Starts the process and its `ProcessIO` pump on a thread of its own; returns once the
    /// agent reported the start.
    static func launch(
        directory: String, sandbox: String, request: AgentMessage, pipes: StdioPipes?, stdin: StdinSource, timeout: Double?,
        captureLimit: Int, onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> LiveProcess {
        let process = LiveProcess()
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                let io: ProcessIO
                do {
                    switch try start(directory: directory, sandbox: sandbox, request: request, pipes: pipes) {
                    case .piped(let agent, let pipes):
                        io = ProcessIO(
                            agent: agent, stdinWrite: pipes.stdinWrite, stdoutRead: pipes.stdoutRead, stderrRead: pipes.stderrRead,
                            stdin: stdin, timeout: timeout, captureLimit: captureLimit, onOutput: onOutput)
                    case .terminal(let agent, let master):
                        // Reads and writes go to the master; the writer is a second descriptor so
                        // that closing stdin (a client's EOF) leaves the output open.
                        let writer = fcntl(master.raw, F_DUPFD_CLOEXEC, 0)
                        guard writer >= 0 else {
                            agent.close()
                            throw SystemError.last("fcntl(F_DUPFD_CLOEXEC)", "terminal of sandbox \(sandbox)")
                        }
                        _ = fcntl(master.raw, F_SETFL, fcntl(master.raw, F_GETFL) | O_NONBLOCK)
                        io = ProcessIO(
                            agent: agent, stdinWrite: OwnedFD(writer), stdoutRead: master, stderrRead: nil, stdin: stdin, timeout: timeout,
                            captureLimit: captureLimit, terminal: master, onOutput: onOutput)
                    }
                } catch {
                    started.resume(throwing: error)
                    return
                }
                started.resume()
                let outcome = io.pump()
                process.finish(io.failure.map { .failure($0) } ?? .success(outcome))
            }
            thread.name = "atoll-exec-\(sandbox.prefix(8))"
            thread.start()
        }
        return process
    }

    /// How a process started: on the request's pipes, or on a terminal whose master end the
    /// agent sent (checked to be one).
    enum Started {
        case piped(AgentConnection, StdioPipes)
        case terminal(AgentConnection, master: OwnedFD)
    }

    /// Connects, sends the request (with the pipes' child ends, when there are pipes) and waits
    /// for `STARTED`.
    static func start(directory: String, sandbox: String, request: AgentMessage, pipes: StdioPipes?) throws -> Started {
        let agent = try AgentConnection.connect(directory: directory, sandbox: sandbox)
        do {
            if let pipes {
                let stderr = pipes.stderrWrite?.raw ?? pipes.stdoutWrite.raw
                try agent.send(request, descriptors: [pipes.stdinRead.raw, pipes.stdoutWrite.raw, stderr])
                // Only the agent holds these ends now, so EOF arrives when the process (and its
                // descendants) are done with them.
                pipes.stdinRead.close()
                pipes.stdoutWrite.close()
                pipes.stderrWrite?.close()
            } else {
                try agent.send(request)
            }
            guard let (reply, descriptor) = try agent.receiveWithDescriptor(timeout: startTimeout, waitingFor: "the start of a process") else {
                throw AtollError(.conflict, "sandbox \(sandbox)'s agent ended before starting the process (the sandbox stopped, or reached its task limit?)")
            }
            switch reply.kind {
            case .started:
                if let pipes {
                    descriptor?.close()
                    return .piped(agent, pipes)
                }
                // It comes from inside the sandbox: only a terminal's master end is used.
                guard let descriptor else { throw AtollError(.internal, "sandbox \(sandbox)'s agent started a terminal but sent no terminal") }
                let check = atoll_pty_check_master(descriptor.raw)
                guard check == 0 else {
                    descriptor.close()
                    throw AtollError(
                        .internal, "sandbox \(sandbox)'s agent sent a descriptor that is not a terminal's master (\(SystemError.describe(-check)))")
                }
                return .terminal(agent, master: descriptor)
            case .error:
                descriptor?.close()
                let failure = AgentFailure.error(reply, fileSemantics: false)
                throw AtollError(failure.code, failure.message, cause: ProcessStartFailure())
            case .exit:
                descriptor?.close()
                throw AtollError(.conflict, "sandbox \(sandbox)'s agent ended before starting the process: \(reply.endDescription)")
            default:
                descriptor?.close()
                throw AtollError(.internal, "sandbox \(sandbox)'s agent sent \(reply.kind) instead of starting the process")
            }
        } catch {
            agent.close()
            throw error
        }
    }
}

/// A process started with `AgentProcess.startLive` (talk to it through the `LiveInput` it was
/// given): wait for its end.
public final class LiveProcess: Sendable {
    private let state = Mutex<(result: Result<ProcessOutcome, AtollError>?, waiters: [CheckedContinuation<Result<ProcessOutcome, AtollError>, Never>])>(
        (nil, []))

    init() {}

    func finish(_ result: Result<ProcessOutcome, AtollError>) {
        let waiters = state.withLock { state in
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }

    /// How the process ended (or why it could not be run), once it has.
    public func wait() async -> Result<ProcessOutcome, AtollError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
