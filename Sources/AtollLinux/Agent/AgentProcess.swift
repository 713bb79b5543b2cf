import AtollCore
import CRuntime
import Foundation
import Glibc

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
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    let agent = try start(directory: directory, sandbox: sandbox, request: request, pipes: pipes)
                    let io = ProcessIO(
                        agent: agent, stdinWrite: pipes.stdinWrite, stdoutRead: pipes.stdoutRead, stderrRead: pipes.stderrRead,
                        stdin: stdin, timeout: timeout, captureLimit: captureLimit, onOutput: onOutput)
                    let outcome = io.pump()
                    if let failure = io.failure { throw failure }
                    continuation.resume(returning: outcome)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "atoll-exec-\(sandbox.prefix(8))"
            thread.start()
        }
    }

    static func start(directory: String, sandbox: String, request: AgentMessage, pipes: StdioPipes) throws -> AgentConnection {
        let agent = try AgentConnection.connect(directory: directory, sandbox: sandbox)
        do {
            let stderr = pipes.stderrWrite?.raw ?? pipes.stdoutWrite.raw
            try agent.send(request, descriptors: [pipes.stdinRead.raw, pipes.stdoutWrite.raw, stderr])
            // Only the agent holds these ends now, so EOF arrives when the process (and its
            // descendants) are done with them.
            pipes.stdinRead.close()
            pipes.stdoutWrite.close()
            pipes.stderrWrite?.close()
            guard let reply = try agent.receive(timeout: startTimeout, waitingFor: "the start of a process") else {
                throw AtollError(.conflict, "sandbox \(sandbox)'s agent ended before starting the process (the sandbox stopped, or reached its task limit?)")
            }
            switch reply.kind {
            case .started: return agent
            case .error:
                let failure = AgentFailure.error(reply, fileSemantics: false)
                throw AtollError(failure.code, failure.message, cause: ProcessStartFailure())
            case .exit: throw AtollError(.conflict, "sandbox \(sandbox)'s agent ended before starting the process: \(reply.endDescription)")
            default: throw AtollError(.internal, "sandbox \(sandbox)'s agent sent \(reply.kind) instead of starting the process")
            }
        } catch {
            agent.close()
            throw error
        }
    }
}
