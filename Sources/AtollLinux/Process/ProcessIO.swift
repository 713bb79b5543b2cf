public import AtollCore
import CRuntime
import Foundation
import Glibc

/// How a process ended.
public enum Termination: Sendable, Hashable, Codable {
    case exited(Int32)
    case signaled(Int32)

    /// Shell convention: the exit code, or 128 + the signal number.
    public var shellStatus: Int32 {
        switch self {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    }
}

/// Where a process's standard input comes from.
public enum StdinSource: Sendable {
    /// Empty: the process reads EOF at once.
    case none
    /// These bytes, then EOF.
    case bytes([UInt8])
    /// Copied from this descriptor (for example the CLI's own stdin) until it reaches EOF.
    case forward(Int32)
    /// Written as the caller sends it, with signals and terminal sizes, until it closes it.
    case live(LiveInput)
}

/// Which stream a chunk of output came from.
public enum OutputChannel: Sendable {
    case stdout
    case stderr
}

/// The outcome of running a process to completion.
public struct ProcessOutcome: Sendable {
    public var termination: Termination
    /// The deadline passed and the process group was killed.
    public var timedOut: Bool
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    /// More output than the capture limit arrived; the rest was dropped.
    public var truncated: Bool
    public var seconds: Double
}

/// Pumps the standard streams of a process the sandbox's agent started, with poll(2) on the
/// thread `AgentProcess.run` gives it: feeds stdin, captures or streams stdout and stderr, learns how the process
/// ended from the agent's `EXIT` message, and on the deadline asks the agent to kill the process's
/// whole group. Every wait has a deadline: a process given no timeout gets the longest one
/// (`maximumSeconds`), and an agent that does not report the end within `exitGrace` after a kill
/// is given up on.
public final class ProcessIO: @unchecked Sendable {
    // @unchecked: all state is confined to the one thread that runs `pump`.
    let agent: AgentConnection
    let stdinWrite: OwnedFD?
    let stdoutRead: OwnedFD
    let stderrRead: OwnedFD?
    let stdinSource: StdinSource
    let timeout: Double
    let captureLimit: Int
    let onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    /// The master end of the process's terminal, when it has one (sizes are set on it).
    let terminal: OwnedFD?
    /// Set when the agent reported, after `STARTED`, that the program could not be executed.
    public private(set) var failure: AtollError?

    /// After the process exits, how long to keep reading output that descendants still write.
    /// Background processes holding the pipes open must not keep an exec waiting forever.
    static let drainGrace = 0.05
    /// The longest any process runs when its caller gives no timeout (Daytona's maximum, a day).
    public static let maximumSeconds = 86400.0
    /// How long the agent has to report the end of a process it was told to kill.
    static let exitGrace = 10.0

    public init(
        agent: AgentConnection, stdinWrite: OwnedFD?, stdoutRead: OwnedFD, stderrRead: OwnedFD?, stdin: StdinSource,
        timeout: Double?, captureLimit: Int, terminal: OwnedFD? = nil, onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) {
        self.terminal = terminal
        self.agent = agent
        self.stdinWrite = stdinWrite
        self.stdoutRead = stdoutRead
        self.stderrRead = stderrRead
        self.stdinSource = stdin
        self.timeout = min(timeout ?? Self.maximumSeconds, Self.maximumSeconds)
        self.captureLimit = captureLimit
        self.onOutput = onOutput
    }

    func pump() -> ProcessOutcome {
        let start = Monotonic.now()
        let deadline = start + timeout
        var stdinBuffer: [UInt8] = []
        var stdinOffset = 0
        var stdinOpen = stdinWrite != nil
        var forwardOpen = false
        switch stdinSource {
        case .none: break
        case .bytes(let bytes): stdinBuffer = bytes
        case .forward, .live: forwardOpen = true
        }
        var live: LiveInput?
        if case .live(let input) = stdinSource { live = input }
        defer { live?.finish() }
        if let w = stdinWrite { _ = fcntl(w.raw, F_SETFL, fcntl(w.raw, F_GETFL) | O_NONBLOCK) }
        var outputs: [(fd: OwnedFD, stream: OutputChannel, open: Bool)] = [(stdoutRead, .stdout, true)]
        if let e = stderrRead { outputs.append((e, .stderr, true)) }
        var captured: [OutputChannel: [UInt8]] = [.stdout: [], .stderr: []]
        var truncated = false
        var termination: Termination?
        var agentOpen = true
        var timedOut = false
        var killDeadline: Double?
        var drainDeadline: Double?
        var buffer = [UInt8](repeating: 0, count: 65536)

        func closeStdin() {
            stdinWrite?.close()
            stdinOpen = false
            forwardOpen = false
        }
        func ended(_ how: Termination) {
            termination = how
            agentOpen = false
            drainDeadline = Monotonic.now() + Self.drainGrace
            if stdinOpen { closeStdin() }
        }
        if stdinOpen && stdinBuffer.isEmpty && !forwardOpen { closeStdin() }

        while true {
            var fds: [pollfd] = []
            var roles: [Int] = []  // index into outputs, or -1 stdin, -2 forward source, -3 the agent
            for (i, o) in outputs.enumerated() where o.open {
                fds.append(pollfd(fd: o.fd.raw, events: Int16(POLLIN), revents: 0))
                roles.append(i)
            }
            if stdinOpen && stdinOffset < stdinBuffer.count {
                fds.append(pollfd(fd: stdinWrite!.raw, events: Int16(POLLOUT), revents: 0))
                roles.append(-1)
            } else if stdinOpen && forwardOpen, case .forward(let source) = stdinSource {
                fds.append(pollfd(fd: source, events: Int16(POLLIN), revents: 0))
                roles.append(-2)
            }
            if let live, termination == nil {
                fds.append(pollfd(fd: live.wakeRead.raw, events: Int16(POLLIN), revents: 0))
                roles.append(-4)
            }
            if agentOpen {
                fds.append(pollfd(fd: agent.socket.raw, events: Int16(POLLIN), revents: 0))
                roles.append(-3)
            }
            let outputsOpen = outputs.contains { $0.open }
            if termination != nil && (!outputsOpen || (drainDeadline.map { Monotonic.now() >= $0 } ?? false)) { break }

            let now = Monotonic.now()
            var wake = timedOut ? (killDeadline ?? now) : deadline
            if let d = drainDeadline { wake = min(wake, d) }
            let waitMs = Int32(max(0, min(Double(Int32.max), (wake - now) * 1000).rounded(.up)))
            let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), waitMs) }
            if ready < 0 && errno != EINTR { break }

            if termination == nil && !timedOut && Monotonic.now() >= deadline {
                // The agent kills the process's whole group (it leads its own session).
                timedOut = true
                killDeadline = Monotonic.now() + Self.exitGrace
                if (try? agent.send(AgentMessage(.signal, numbers: [Int64(SIGKILL)]))) == nil { ended(.signaled(SIGKILL)) }
            }
            if termination == nil, let k = killDeadline, Monotonic.now() >= k {
                ended(.signaled(SIGKILL))  // the agent never reported the end: give up on it
            }
            guard ready > 0 else { continue }

            for (k, fd) in fds.enumerated() where fd.revents != 0 {
                switch roles[k] {
                case -3:
                    guard termination == nil else { break }
                    switch (try? agent.receive(timeout: 0, waitingFor: "the end of a process")) ?? nil {
                    case let message? where message.kind == .exit:
                        ended(
                            message.number(0) == 1
                                ? .exited(Int32(truncatingIfNeeded: message.number(1)))
                                : .signaled(Int32(truncatingIfNeeded: message.number(1))))
                    case let message? where message.kind == .error:
                        failure = AgentFailure.error(message, fileSemantics: false)  // execve itself failed
                    case .some:
                        break  // nothing else is expected once the process runs
                    case nil:
                        ended(.signaled(SIGKILL))  // the agent is gone (the sandbox stopped)
                    }
                case -4:
                    guard let live else { break }
                    let request = live.take()
                    if stdinOpen && !request.bytes.isEmpty {
                        stdinBuffer = Array(stdinBuffer[stdinOffset...]) + request.bytes
                        stdinOffset = 0
                    }
                    if request.closeRequested {
                        forwardOpen = false
                        if stdinOpen && stdinOffset >= stdinBuffer.count { closeStdin() }
                    }
                    for signal in request.signals {
                        if (try? agent.send(AgentMessage(.signal, numbers: [Int64(signal)]))) == nil { ended(.signaled(SIGKILL)) }
                    }
                    if let size = request.size, let terminal {
                        _ = atoll_pty_resize(terminal.raw, size.rows, size.columns)
                    }
                case -1:
                    let n = stdinBuffer[stdinOffset...].withUnsafeBytes { write(fd.fd, $0.baseAddress, $0.count) }
                    if n > 0 { stdinOffset += n }
                    if n < 0 && errno != EAGAIN && errno != EINTR { closeStdin() }  // EPIPE: it closed stdin
                    if stdinOffset >= stdinBuffer.count && !forwardOpen { closeStdin() }
                case -2:
                    let n = buffer.withUnsafeMutableBytes { read(fd.fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        stdinBuffer = Array(buffer[0..<n])
                        stdinOffset = 0
                    } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                        forwardOpen = false
                        if stdinOffset >= stdinBuffer.count { closeStdin() }
                    }
                default:
                    let index = roles[k]
                    let n = buffer.withUnsafeMutableBytes { read(fd.fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        let chunk = Array(buffer[0..<n])
                        let stream = outputs[index].stream
                        onOutput?(stream, chunk)
                        let room = captureLimit - captured[stream]!.count
                        if room >= chunk.count {
                            captured[stream]!.append(contentsOf: chunk)
                        } else {
                            if room > 0 { captured[stream]!.append(contentsOf: chunk[0..<room]) }
                            truncated = true
                        }
                    } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                        outputs[index].open = false
                    }
                }
            }
        }
        agent.close()
        return ProcessOutcome(
            termination: termination ?? .signaled(SIGKILL),
            timedOut: timedOut,
            stdout: captured[.stdout]!,
            stderr: captured[.stderr]!,
            truncated: truncated,
            seconds: Monotonic.now() - start
        )
    }
}

/// Pipes for a child's standard streams.
public struct StdioPipes: Sendable {
    public let stdinRead: OwnedFD
    public let stdinWrite: OwnedFD
    public let stdoutRead: OwnedFD
    public let stdoutWrite: OwnedFD
    /// nil when stderr is merged into stdout.
    public let stderrRead: OwnedFD?
    public let stderrWrite: OwnedFD?

    public static func make(mergeStderr: Bool) throws -> StdioPipes {
        func pipePair() throws -> (OwnedFD, OwnedFD) {
            var fds: [Int32] = [-1, -1]
            let rc = atoll_pipe_cloexec(&fds)
            guard rc == 0 else { throw SystemError.error("pipe2", errno: -rc) }
            return (OwnedFD(fds[0]), OwnedFD(fds[1]))
        }
        let stdin = try pipePair()
        let stdout = try pipePair()
        let stderr = mergeStderr ? nil : try pipePair()
        for fd in [stdout.0, stderr?.0].compactMap({ $0 }) {
            _ = fcntl(fd.raw, F_SETFL, fcntl(fd.raw, F_GETFL) | O_NONBLOCK)
        }
        return StdioPipes(
            stdinRead: stdin.0, stdinWrite: stdin.1, stdoutRead: stdout.0, stdoutWrite: stdout.1,
            stderrRead: stderr?.0, stderrWrite: stderr?.1)
    }
}
