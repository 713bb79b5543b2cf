public import AtollCore
public import CRuntime
public import Glibc

/// What a host program did: its exit status (or the signal that killed it) and its output.
public struct HostProcessResult: Sendable {
    /// The exit status, or nil when a signal killed it.
    public var exitStatus: Int32?
    /// The signal that killed it, if one did.
    public var signal: Int32?
    public var stdout: [UInt8]
    public var stderr: [UInt8]

    public var succeeded: Bool { exitStatus == 0 }
}

/// Runs host programs (mkfs.ext4, the archive pipeline, …) with posix_spawn, reads their output
/// with poll(2) and reaps them with waitpid. Not Foundation's `Process`: it watches children
/// through select(2), whose fd_set aborts the whole daemon once descriptors pass 1024 — which a
/// daemon holding a few descriptors per sandbox reaches at about 170 sandboxes.
public enum HostProcess {
    /// Runs `executable` with `arguments` and exactly `environment` (KEY=VALUE), standard input
    /// from /dev/null; standard output is captured unless `captureStdout` is false (then it goes
    /// to /dev/null). `started` sees the pid (to cancel a long run with a signal).
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String], captureStdout: Bool = true,
        started: ((pid_t) -> Void)? = nil
    ) throws -> HostProcessResult {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        var rc = atoll_pipe_cloexec(&outPipe)
        guard rc == 0 else { throw SystemError.error("pipe2", executable, errno: -rc) }
        rc = atoll_pipe_cloexec(&errPipe)
        guard rc == 0 else {
            close(outPipe[0])
            close(outPipe[1])
            throw SystemError.error("pipe2", executable, errno: -rc)
        }
        var readEnds = [outPipe[0], errPipe[0]]
        defer { for fd in readEnds where fd >= 0 { close(fd) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if captureStdout {
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)

        var pid: pid_t = 0
        rc = spawn(&pid, executable, arguments, environment: environment, actions: &actions)
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else { throw SystemError.error("posix_spawn", executable, errno: rc) }
        started?(pid)

        // Drain both pipes until EOF, so a chatty program never blocks on a full pipe.
        var captured: [[UInt8]] = [[], []]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while readEnds.contains(where: { $0 >= 0 }) {
            var fds = readEnds.filter { $0 >= 0 }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), -1) }
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            for entry in fds where entry.revents != 0 {
                guard let index = readEnds.firstIndex(of: entry.fd) else { continue }
                let n = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    captured[index].append(contentsOf: buffer[0..<n])
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(entry.fd)
                    readEnds[index] = -1
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemError.error("waitpid", executable, errno: errno) }
        }
        // The wait status, decoded as <sys/wait.h> does (its macros do not reach Swift).
        let termination = status & 0x7f
        return HostProcessResult(
            exitStatus: termination == 0 ? (status >> 8) & 0xff : nil, signal: termination == 0 ? nil : termination,
            stdout: captured[0], stderr: captured[1])
    }
}

extension HostProcess {
    /// posix_spawn with default signal dispositions and an empty mask (nothing of the daemon's
    /// signal set-up leaks in), exactly `environment`; returns posix_spawn's result.
    static func spawn(
        _ pid: inout pid_t, _ executable: String, _ arguments: [String], environment: [String], actions: inout posix_spawn_file_actions_t
    ) -> Int32 {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        var none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        return posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    }
}

/// A host program whose standard output is read as a stream (a decompressor feeding a layer
/// unpack): started by `HostFilter.start`, read from `output`, then `finish()`ed.
public final class HostFilter {
    public let pid: pid_t
    /// The program's standard output.
    public let output: OwnedFD
    private let errors: OwnedFD
    private let executable: String
    private var reaped = false

    /// Starts `executable` with `arguments`, standard input from `inputPath`, exactly
    /// `environment` (KEY=VALUE), default signal dispositions; standard error kept for the failure message.
    public init(_ executable: String, _ arguments: [String], inputPath: String, environment: [String] = []) throws {
        let out = try KernelPipe.make()
        let err = try KernelPipe.make()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inputPath, O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out.write.raw, 1)
        posix_spawn_file_actions_adddup2(&actions, err.write.raw, 2)
        var pid: pid_t = 0
        let rc = HostProcess.spawn(&pid, executable, arguments, environment: environment, actions: &actions)
        out.write.close()
        err.write.close()
        guard rc == 0 else { throw SystemError.error("posix_spawn", executable, errno: rc) }
        self.pid = pid
        self.executable = executable
        output = out.read
        errors = err.read
    }

    /// Reads up to `buffer.count` bytes of output; 0 at its end.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(output.raw, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno != EINTR { throw SystemError.last("read", "output of \(executable)") }
        }
    }

    /// Waits for the program; throws with its standard error unless it exited 0.
    public func finish() throws {
        output.close()
        var message = [UInt8](repeating: 0, count: 4096)
        let n = message.withUnsafeMutableBytes { Glibc.read(errors.raw, $0.baseAddress, $0.count) }
        errors.close()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemError.error("waitpid", executable, errno: errno) }
        }
        reaped = true
        guard status == 0 else {
            let text = n > 0 ? String(decoding: message[0..<n], as: UTF8.self).split(whereSeparator: \.isNewline).joined(separator: "; ") : ""
            throw AtollError(.system, "\(executable) failed (wait status \(status))\(text.isEmpty ? "" : ": \(text.prefix(400))")")
        }
    }

    deinit {
        if !reaped {
            _ = kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }
}
