import AtollCore
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

/// Pumps a child's standard streams with poll(2) on a dedicated thread: feeds stdin, captures or
/// streams stdout and stderr, enforces the timeout by killing the process group, and reaps the
/// child through its pidfd.
public final class ProcessIO: @unchecked Sendable {
    // @unchecked: all state is confined to the one thread that runs `pump`.
    let pid: Int32
    let pidfd: OwnedFD
    let stdinWrite: OwnedFD?
    let stdoutRead: OwnedFD
    let stderrRead: OwnedFD?
    let stdinSource: StdinSource
    let timeout: Double?
    let captureLimit: Int
    let onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?

    /// After the process exits, how long to keep reading output that descendants still write.
    /// Background processes holding the pipes open must not keep an exec waiting forever.
    static let drainGrace = 0.05

    public init(pid: Int32, pidfd: OwnedFD, stdinWrite: OwnedFD?, stdoutRead: OwnedFD, stderrRead: OwnedFD?, stdin: StdinSource,
         timeout: Double?, captureLimit: Int, onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?) {
        self.pid = pid
        self.pidfd = pidfd
        self.stdinWrite = stdinWrite
        self.stdoutRead = stdoutRead
        self.stderrRead = stderrRead
        self.stdinSource = stdin
        self.timeout = timeout
        self.captureLimit = captureLimit
        self.onOutput = onOutput
    }

    /// Runs the pump on its own thread so no Swift concurrency thread blocks in poll.
    public func run() async -> ProcessOutcome {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: self.pump()) }
            thread.name = "atoll-exec-\(pid)"
            thread.start()
        }
    }

    func pump() -> ProcessOutcome {
        let start = Monotonic.now()
        let deadline = timeout.map { start + $0 }
        var stdinBuffer: [UInt8] = []
        var stdinOffset = 0
        var stdinOpen = stdinWrite != nil
        var forwardOpen = false
        switch stdinSource {
        case .none: break
        case .bytes(let bytes): stdinBuffer = bytes
        case .forward: forwardOpen = true
        }
        if let w = stdinWrite { _ = fcntl(w.raw, F_SETFL, fcntl(w.raw, F_GETFL) | O_NONBLOCK) }
        var outputs: [(fd: OwnedFD, stream: OutputChannel, open: Bool)] = [(stdoutRead, .stdout, true)]
        if let e = stderrRead { outputs.append((e, .stderr, true)) }
        var captured: [OutputChannel: [UInt8]] = [.stdout: [], .stderr: []]
        var truncated = false
        var exited = false
        var timedOut = false
        var drainDeadline: Double?
        var buffer = [UInt8](repeating: 0, count: 65536)

        func closeStdin() {
            stdinWrite?.close()
            stdinOpen = false
            forwardOpen = false
        }
        if stdinOpen && stdinBuffer.isEmpty && !forwardOpen { closeStdin() }

        while true {
            var fds: [pollfd] = []
            var roles: [Int] = []  // index into outputs, or -1 stdin, -2 forward source, -3 pidfd
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
            if !exited {
                fds.append(pollfd(fd: pidfd.raw, events: Int16(POLLIN), revents: 0))
                roles.append(-3)
            }
            let outputsOpen = outputs.contains { $0.open }
            if exited && (!outputsOpen || (drainDeadline.map { Monotonic.now() >= $0 } ?? false)) { break }

            var waitMs: Int32 = -1
            let now = Monotonic.now()
            if let d = deadline, !timedOut { waitMs = Int32(max(0, min(Double(Int32.max), (d - now) * 1000).rounded(.up))) }
            if let d = drainDeadline { waitMs = Int32(max(0, (d - now) * 1000).rounded(.up)) }
            let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), waitMs) }
            if ready < 0 && errno != EINTR { break }

            if let d = deadline, !timedOut, !exited, Monotonic.now() >= d {
                // The process leads its own process group (setsid in the shim): kill all of it.
                timedOut = true
                _ = kill(-pid, SIGKILL)
                _ = kill(pid, SIGKILL)
            }
            guard ready > 0 else { continue }

            for (k, fd) in fds.enumerated() where fd.revents != 0 {
                switch roles[k] {
                case -3:
                    exited = true
                    drainDeadline = Monotonic.now() + Self.drainGrace
                    if stdinOpen { closeStdin() }
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
        var exit = atoll_exit()
        var failure = atoll_error()
        let reaped = atoll_pidfd_wait(pidfd.raw, 1, &exit, &failure)
        let termination: Termination = reaped == 1 ? (exit.exited == 1 ? .exited(exit.status) : .signaled(exit.status)) : .signaled(SIGKILL)
        return ProcessOutcome(
            termination: termination,
            timedOut: timedOut,
            stdout: captured[.stdout]!,
            stderr: captured[.stderr]!,
            truncated: truncated,
            seconds: Monotonic.now() - start
        )
    }
}

/// Pipes for a child's standard streams.
public struct StdioPipes {
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
        return StdioPipes(stdinRead: stdin.0, stdinWrite: stdin.1, stdoutRead: stdout.0, stdoutWrite: stdout.1,
                          stderrRead: stderr?.0, stderrWrite: stderr?.1)
    }
}
