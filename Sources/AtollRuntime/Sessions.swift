import AtollCore
public import AtollLinux
import AtollSandbox
import AtollStore
import Foundation
import Glibc

/// A command run in a session.
public struct SessionCommand: Sendable, Hashable {
    public var id: String
    public var command: String
    /// nil while it runs.
    public var exitCode: Int32?
}

/// A stateful shell in a sandbox: commands run one after the other in the same bash, so `cd`,
/// variables and functions carry over (Daytona's process sessions).
public struct Session: Sendable, Hashable {
    public var id: String
    public var commands: [SessionCommand]

    public init(id: String, commands: [SessionCommand]) {
        self.id = id
        self.commands = commands
    }
}

/// The output of a session command so far.
public struct SessionLogs: Sendable, Hashable {
    public var stdout: String
    public var stderr: String
    /// stdout followed by stderr.
    public var output: String { stdout + stderr }
}

/// How sessions work: each session is a `bash` (as the sandbox's user, in its own process group)
/// whose standard input is a FIFO in `/tmp/.atoll-sessions/<id>/`. A command is written to a
/// file there and a one-line wrapper to the FIFO; the wrapper `eval`s the file (so a syntax error
/// stays inside that command), sends its output to `<cmd>.out` / `<cmd>.err`, and records the
/// exit status in `<cmd>.exit` last (atomically, by rename). Everything a session has lives in
/// the sandbox; `Sessions` keeps only the list of sessions and commands, tied to the PID 1 they
/// were started under (the shells die with the sandbox's processes, so a stop ends them).
struct SessionState: Sendable {
    var id: String
    var shellPid: Int32
    var commands: [(id: String, command: String)]
    /// The write ends of running commands' stdin FIFOs, by command id (closed when the command
    /// is seen to end, on EOF, or with the session).
    var inputs: [String: OwnedFD] = [:]
}

/// Daytona's process sessions, kept apart from the lifecycle actor: a session call waits on the
/// sandbox (polling a command's exit file, writing to its FIFO) without holding up creates, stops
/// or other sandboxes' calls. It asks the runner only for the sandbox's running machine.
public actor Sessions {
    nonisolated let runner: SandboxManager
    /// Sessions by sandbox id: the PID 1 they belong to, and the sessions by id.
    private var bySandbox: [String: (initProcess: InitProcess, sessions: [String: SessionState])] = [:]

    public init(runner: SandboxManager) {
        self.runner = runner
    }

    var driver: any SandboxDriving { runner.driver }
    var now: Double { runner.clock.now().timeIntervalSince1970 }

    /// The started sandbox and its PID 1; sessions recorded under an earlier PID 1 (the sandbox
    /// was stopped or restarted since) are forgotten here.
    func runningMachine(_ idOrName: String, organizationId: String?) async throws -> (SandboxMachine, InitProcess) {
        let (machine, process) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        if let known = bySandbox[machine.id.rawValue], known.initProcess != process { forget(machine.id.rawValue) }
        return (machine, process)
    }

    /// Drops a sandbox's sessions, closing the command inputs atolld held for them.
    private func forget(_ sandbox: String) {
        if let entry = bySandbox[sandbox] {
            for session in entry.sessions.values { session.inputs.values.forEach { $0.close() } }
        }
        bySandbox[sandbox] = nil
    }

    func noteActivity(_ sandbox: String) async { await runner.noteActivity(sandbox) }

    private func sessions(of sandbox: String) -> [String: SessionState] { bySandbox[sandbox]?.sessions ?? [:] }

    /// Forgets the sessions of sandboxes that were deleted, stopped or restarted (called on
    /// create, so the table never outgrows the sandboxes that have sessions).
    private func prune() {
        for (id, entry) in bySandbox {
            if !runner.isRunning(id, as: entry.initProcess) { forget(id) }
        }
    }

    static let sessionRoot = "/tmp/.atoll-sessions"

    public static func checkSessionID(_ id: String) throws {
        guard !id.isEmpty, id.utf8.count <= 64,
            id.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95 || $0 == 46 }),
            id != ".", id != ".."
        else {
            throw AtollError(.invalidArgument, "invalid session id \"\(id.prefix(64))\": use 1-64 letters, digits, '-', '_' or '.'")
        }
    }

    func sessionDirectory(_ session: String) -> String { "\(Self.sessionRoot)/\(session)" }

    /// Commands' stdin FIFOs live on the sandbox's /dev/shm (a tmpfs), not its disk: atolld holds
    /// their write ends, and a descriptor on the disk would keep its loop device bound after the
    /// sandbox stops.
    static let inputRoot = "/dev/shm/.atoll-sessions"

    func inputDirectory(_ session: String) -> String { "\(Self.inputRoot)/\(session)" }

    func session(_ sandbox: String, _ session: String) throws -> SessionState {
        guard let state = bySandbox[sandbox]?.sessions[session] else { throw AtollError(.notFound, "session \(session.prefix(64)) not found") }
        return state
    }

    /// Starts a session.
    public func create(_ idOrName: String, sessionId: String, organizationId: String? = nil) async throws {
        try Self.checkSessionID(sessionId)
        prune()
        let (machine, process) = try await runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        if sessions(of: sandbox)[sessionId] != nil { throw AtollError(.conflict, "session \(sessionId) already exists") }
        let dir = sessionDirectory(sessionId)
        let inputs = inputDirectory(sessionId)
        let files = try driver.files(machine, initProcess: process, user: nil)
        try await WorkPool.shared.run {
            try files.delete(dir, recursive: true, missingOK: true)  // left by an earlier run
            try files.createDirectory(Self.sessionRoot, mode: 0o1777)
            try files.createDirectory(dir, mode: 0o700)
            try files.delete(inputs, recursive: true, missingOK: true)
            try files.createDirectory(Self.inputRoot, mode: 0o1777)
            try files.createDirectory(inputs, mode: 0o700)
            try files.makeFifo("\(dir)/in")
        }
        // The FIFO is opened read-write, so the shell never sees end-of-file between commands.
        let start = try await driver.exec(
            machine, initProcess: process,
            ExecRequest(
                command: .argv(["/bin/sh", "-c", "setsid bash --noprofile --norc 0<>\"$1\" >/dev/null 2>&1 & echo $!", "atoll-session", "\(dir)/in"]),
                timeout: 30), onOutput: nil)
        guard start.exitCode == 0, let pid = Int32(start.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw AtollError(.system, "could not start the session's shell: \(start.stderrText.prefix(300))")
        }
        // Another create of the same id, or a restart, may have happened during the awaits.
        let (_, current) = try await runningMachine(idOrName, organizationId: organizationId)
        guard current == process else { throw AtollError(.conflict, "sandbox \(sandbox) restarted while session \(sessionId) was created") }
        guard sessions(of: sandbox)[sessionId] == nil else { throw AtollError(.conflict, "session \(sessionId) already exists") }
        bySandbox[sandbox, default: (process, [:])].sessions[sessionId] = SessionState(id: sessionId, shellPid: pid, commands: [])
        await noteActivity(sandbox)
    }

    public func list(_ idOrName: String, organizationId: String? = nil) async throws -> [Session] {
        let (machine, _) = try await runningMachine(idOrName, organizationId: organizationId)
        var result: [Session] = []
        for id in sessions(of: machine.id.rawValue).keys.sorted() {
            result.append(try await get(idOrName, sessionId: id, organizationId: organizationId))
        }
        return result
    }

    public func get(_ idOrName: String, sessionId: String, organizationId: String? = nil) async throws -> Session {
        let (machine, process) = try await runningMachine(idOrName, organizationId: organizationId)
        let state = try session(machine.id.rawValue, sessionId)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        let commands = state.commands
        let session = try await WorkPool.shared.run {
            Session(
                id: sessionId,
                commands: commands.map { command in
                    SessionCommand(id: command.id, command: command.command, exitCode: Self.exitCode(files, "\(dir)/\(command.id).exit"))
                })
        }
        for command in session.commands where command.exitCode != nil { closeInput(machine.id.rawValue, sessionId, command.id) }
        return session
    }

    /// The exit code a command recorded, or nil while it runs. Blocking: call it on the work pool.
    static func exitCode(_ files: SandboxFiles, _ path: String) -> Int32? {
        guard let bytes = try? files.read(path, limit: 64) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs a command in a session. Without `async`, waits for it and returns its exit code and
    /// output; with `async`, returns at once (the command's id is in the result).
    public func execute(
        _ idOrName: String, sessionId: String, command: String, async runAsync: Bool,
        organizationId: String? = nil
    ) async throws -> (command: SessionCommand, logs: SessionLogs?) {
        guard !command.isEmpty else { throw AtollError(.invalidArgument, "command is empty") }
        let (machine, process) = try await runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        _ = try session(sandbox, sessionId)
        let id = UUID().uuidString.lowercased()
        let dir = sessionDirectory(sessionId)
        let files = try driver.files(machine, initProcess: process, user: nil)
        // stdin is the command's own FIFO, whose write end atolld holds (opened before the
        // command starts, so the shell's open never waits): input arrives through it
        // (`sendInput`), and closing it is the command's EOF.
        let fifo = "\(inputDirectory(sessionId))/\(id)"
        let line =
            "{ eval \"$(cat '\(dir)/\(id).cmd')\"; } > '\(dir)/\(id).out' 2> '\(dir)/\(id).err' < '\(fifo)'; "
            + "echo $? > '\(dir)/\(id).exit.tmp'; mv -f '\(dir)/\(id).exit.tmp' '\(dir)/\(id).exit'; rm -f '\(fifo)'\n"
        let text = Array(command.utf8)
        let input = try await WorkPool.shared.run {
            try files.write("\(dir)/\(id).cmd", bytes: text, mode: 0o600)
            let input = try files.openFifo(fifo, create: 0o600)
            do {
                try files.writeToFifo("\(dir)/in", line)
            } catch {
                input.close()
                throw error
            }
            return input
        }
        guard bySandbox[sandbox]?.sessions[sessionId] != nil else {
            input.close()
            throw AtollError(.conflict, "session \(sessionId) ended while the command started")
        }
        bySandbox[sandbox]?.sessions[sessionId]?.commands.append((id, command))
        bySandbox[sandbox]?.sessions[sessionId]?.inputs[id] = input
        capOpenInputs(sandbox, sessionId, keep: Self.openInputLimit)
        await noteActivity(sandbox)
        if runAsync { return (SessionCommand(id: id, command: command, exitCode: nil), nil) }
        var delay = 0.002
        // Like every wait on a sandbox, this one ends: a command still running after the longest
        // exec time is left running, and the caller told so (its logs stay readable).
        let deadline = now + ProcessIO.maximumSeconds
        while true {
            guard now < deadline else {
                throw AtollError(.timeout, "session command \(id) still runs after \(Int(ProcessIO.maximumSeconds)) s; follow it with its logs")
            }
            if let code = try await WorkPool.shared.run({ Self.exitCode(files, "\(dir)/\(id).exit") }) {
                closeInput(sandbox, sessionId, id)
                await noteActivity(sandbox)
                let logs = try await WorkPool.shared.run { Self.logs(files, dir, id) }
                return (SessionCommand(id: id, command: command, exitCode: code), logs)
            }
            // A stop or restart of the sandbox ends the session (and this wait).
            let (_, current) = try await runningMachine(idOrName, organizationId: organizationId)
            guard current == process, sessions(of: sandbox)[sessionId] != nil else {
                throw AtollError(.conflict, "session \(sessionId) ended while the command ran")
            }
            try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            delay = min(delay * 1.5, 0.1)
        }
    }

    /// A command's output so far. Blocking: call it on the work pool.
    static func logs(_ files: SandboxFiles, _ dir: String, _ id: String) -> SessionLogs {
        let limit = 16 << 20
        let out = (try? files.read("\(dir)/\(id).out", limit: limit)) ?? []
        let err = (try? files.read("\(dir)/\(id).err", limit: limit)) ?? []
        return SessionLogs(stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    public func command(
        _ idOrName: String, sessionId: String, commandId: String,
        organizationId: String? = nil
    ) async throws -> SessionCommand {
        let session = try await get(idOrName, sessionId: sessionId, organizationId: organizationId)
        guard let command = session.commands.first(where: { $0.id == commandId }) else {
            throw AtollError(.notFound, "command \(commandId.prefix(64)) not found in session \(sessionId)")
        }
        return command
    }

    public func logs(
        _ idOrName: String, sessionId: String, commandId: String,
        organizationId: String? = nil
    ) async throws -> SessionLogs {
        let (machine, process) = try await runningMachine(idOrName, organizationId: organizationId)
        let state = try session(machine.id.rawValue, sessionId)
        guard state.commands.contains(where: { $0.id == commandId }) else {
            throw AtollError(.notFound, "command \(commandId.prefix(64)) not found in session \(sessionId)")
        }
        await noteActivity(machine.id.rawValue)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        return try await WorkPool.shared.run { Self.logs(files, dir, commandId) }
    }

    /// Ends a session: its shell and everything it started are killed, its files removed.
    public func delete(_ idOrName: String, sessionId: String, organizationId: String? = nil) async throws {
        let (machine, process) = try await runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        let state = try session(sandbox, sessionId)
        bySandbox[sandbox]?.sessions[sessionId] = nil
        state.inputs.values.forEach { $0.close() }
        _ = try? await driver.exec(
            machine, initProcess: process,
            ExecRequest(
                command: .argv(["/bin/kill", "-KILL", "--", "-\(state.shellPid)"]), user: "root", timeout: 10), onOutput: nil)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        let inputs = inputDirectory(sessionId)
        _ = try? await WorkPool.shared.run {
            try files.delete(dir, recursive: true, missingOK: true)
            try files.delete(inputs, recursive: true, missingOK: true)
        }
        await noteActivity(sandbox)
    }
}

extension Sessions {
    /// The started sandbox, its PID 1 and the session, once `commandId` is known to be one of its
    /// commands.
    func command(
        _ idOrName: String, sessionId: String, commandId: String, organizationId: String?
    ) async throws -> (SandboxMachine, InitProcess, SessionState) {
        let (machine, process) = try await runningMachine(idOrName, organizationId: organizationId)
        let state = try session(machine.id.rawValue, sessionId)
        guard state.commands.contains(where: { $0.id == commandId }) else {
            throw AtollError(.notFound, "command \(commandId.prefix(64)) not found in session \(sessionId)")
        }
        return (machine, process, state)
    }

    /// Input FIFOs held open per session at most: beyond it, those of the oldest commands are
    /// closed (their commands read EOF), so commands nobody asks about cannot pile up descriptors.
    static let openInputLimit = 256

    func closeInput(_ sandbox: String, _ session: String, _ command: String) {
        bySandbox[sandbox]?.sessions[session]?.inputs.removeValue(forKey: command)?.close()
    }

    /// Keeps at most `keep` input FIFOs of a session open (the newest commands').
    func capOpenInputs(_ sandbox: String, _ session: String, keep: Int) {
        guard let state = try? self.session(sandbox, session), state.inputs.count > keep else { return }
        let order = state.commands.map(\.id)
        let open = order.filter { state.inputs[$0] != nil }
        for id in open.prefix(open.count - keep) { closeInput(sandbox, session, id) }
    }

    /// Sends `data` to a running command's stdin, with a newline added unless it ends with one
    /// (as Daytona's daemon does, so that `read` gets its line). `data` of exactly Ctrl-D
    /// ("\u{4}") closes the command's stdin instead: the command reads EOF (Atoll's addition; the
    /// SDK has no call for it).
    public func sendInput(
        _ idOrName: String, sessionId: String, commandId: String, data: String, organizationId: String? = nil
    ) async throws {
        let (machine, process, state) = try await command(idOrName, sessionId: sessionId, commandId: commandId, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        if let code = try await WorkPool.shared.run({ Self.exitCode(files, "\(dir)/\(commandId).exit") }) {
            closeInput(sandbox, sessionId, commandId)
            throw AtollError(.gone, "command \(commandId) has already completed with exit code \(code)")
        }
        guard let input = state.inputs[commandId] else {
            throw AtollError(.gone, "command \(commandId)'s input is closed")
        }
        await noteActivity(sandbox)
        if data == "\u{4}" {
            closeInput(sandbox, sessionId, commandId)
            return
        }
        let bytes = Array((data.hasSuffix("\n") ? data : data + "\n").utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(input.raw, $0.baseAddress, $0.count) }
            if n > 0 {
                written += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                let error = errno
                throw error == EAGAIN
                    ? AtollError(
                        .resourceExhausted, "command \(commandId) is not reading its input (its pipe is full; \(written) of \(bytes.count) bytes sent)")
                    : SystemError.error("write", "stdin of command \(commandId)", errno: error)
            }
        }
    }

    /// Follows a command's output: `onChunk` gets stdout and stderr as they are written, until
    /// the command has ended and everything it wrote was delivered, or the session or sandbox ends
    /// (an error). The output files are opened once by the agent and read here with `pread`
    /// every `interval` seconds from where the last read ended; whether the command has ended is
    /// asked of the agent every `exitInterval`.
    public func follow(
        _ idOrName: String, sessionId: String, commandId: String, organizationId: String? = nil, interval: Double = 0.05,
        exitInterval: Double = 0.2, onChunk: @Sendable (OutputChannel, [UInt8]) async throws -> Void
    ) async throws {
        let (machine, process, _) = try await command(idOrName, sessionId: sessionId, commandId: commandId, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        let followers = OutputFollowers(paths: [.stdout: "\(dir)/\(commandId).out", .stderr: "\(dir)/\(commandId).err"])
        defer { followers.close() }
        var lastActivity = now
        var lastExitCheck = -Double.infinity
        while true {
            // The exit file is written after the command's output is complete: asked first, so
            // that the reads after it see everything.
            var exited = false
            if now - lastExitCheck >= exitInterval {
                lastExitCheck = now
                exited = try await WorkPool.shared.run { Self.exitCode(files, "\(dir)/\(commandId).exit") } != nil
            }
            for channel in [OutputChannel.stdout, .stderr] {
                while let chunk = try await WorkPool.shared.run({ try followers.next(channel, files: files) }) {
                    try await onChunk(channel, chunk)
                }
            }
            if exited {
                closeInput(sandbox, sessionId, commandId)
                return
            }
            if now - lastActivity > 30 {
                lastActivity = now
                await noteActivity(sandbox)
            }
            let (_, current) = try await runningMachine(idOrName, organizationId: organizationId)
            guard current == process, (try? session(sandbox, sessionId)) != nil else {
                throw AtollError(.conflict, "session \(sessionId) ended while its command's logs were followed")
            }
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }
}

/// The output files of a followed command, each opened once (by the agent, as it appears) and
/// read with `pread` from where the last read ended. Used from one task at a time.
final class OutputFollowers: @unchecked Sendable {
    // @unchecked: one follower uses it, one call at a time (on the work pool).
    let paths: [OutputChannel: String]
    private var descriptors: [OutputChannel: OwnedFD] = [:]
    private var offsets: [OutputChannel: Int64] = [:]
    static let chunk = 256 << 10

    init(paths: [OutputChannel: String]) { self.paths = paths }

    /// The next bytes written to `channel`'s file, or nil when there are none yet. Blocking.
    func next(_ channel: OutputChannel, files: SandboxFiles) throws -> [UInt8]? {
        if descriptors[channel] == nil {
            // Not there until the command starts writing.
            guard let path = paths[channel], let opened = try? files.openForReading(path) else { return nil }
            descriptors[channel] = opened
        }
        guard let fd = descriptors[channel] else { return nil }
        var buffer = [UInt8](repeating: 0, count: Self.chunk)
        let offset = offsets[channel, default: 0]
        let n = buffer.withUnsafeMutableBytes { pread(fd.raw, $0.baseAddress, $0.count, off_t(offset)) }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { return nil }
            throw SystemError.last("pread", paths[channel] ?? "")
        }
        guard n > 0 else { return nil }
        offsets[channel] = offset + Int64(n)
        return Array(buffer[0..<n])
    }

    func close() { descriptors.values.forEach { $0.close() } }
}
