import AtollCore
import AtollLinux
import AtollSandbox
import Foundation

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
/// the sandbox; the runner keeps only the list of sessions and commands, which a stop clears
/// (the shells die with the sandbox's processes).
struct SessionState: Sendable {
    var id: String
    var shellPid: Int32
    var commands: [(id: String, command: String)]
}

extension SandboxManager {
    static let sessionRoot = "/tmp/.atoll-sessions"

    static func checkSessionID(_ id: String) throws {
        guard !id.isEmpty, id.utf8.count <= 64,
            id.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95 || $0 == 46 }),
            id != ".", id != ".."
        else {
            throw AtollError(.invalidArgument, "invalid session id \"\(id.prefix(64))\": use 1-64 letters, digits, '-', '_' or '.'")
        }
    }

    func sessionDirectory(_ session: String) -> String { "\(Self.sessionRoot)/\(session)" }

    func session(_ sandbox: String, _ session: String) throws -> SessionState {
        guard let state = sessions[sandbox]?[session] else { throw AtollError(.notFound, "session \(session.prefix(64)) not found") }
        return state
    }

    /// Starts a session.
    public func createSession(_ idOrName: String, sessionId: String, organizationId: String? = nil) async throws {
        try Self.checkSessionID(sessionId)
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        if sessions[sandbox]?[sessionId] != nil { throw AtollError(.conflict, "session \(sessionId) already exists") }
        let dir = sessionDirectory(sessionId)
        let files = try driver.files(machine, initProcess: process, user: nil)
        try await WorkPool.shared.run {
            try files.delete(dir, recursive: true, missingOK: true)  // left by an earlier run
            try files.createDirectory(Self.sessionRoot, mode: 0o1777)
            try files.createDirectory(dir, mode: 0o700)
            try files.makeFifo("\(dir)/in")
        }
        // The FIFO is opened read-write, so the shell never sees end-of-file between commands.
        let start = try await driver.exec(machine, initProcess: process, ExecRequest(
            command: .argv(["/bin/sh", "-c", "setsid bash --noprofile --norc 0<>\"$1\" >/dev/null 2>&1 & echo $!", "atoll-session", "\(dir)/in"]),
            timeout: 30), onOutput: nil)
        guard start.exitCode == 0, let pid = Int32(start.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw AtollError(.system, "could not start the session's shell: \(start.stderrText.prefix(300))")
        }
        guard sessions[sandbox]?[sessionId] == nil else { throw AtollError(.conflict, "session \(sessionId) already exists") }
        sessions[sandbox, default: [:]][sessionId] = SessionState(id: sessionId, shellPid: pid, commands: [])
        noteActivity(sandbox)
    }

    public func listSessions(_ idOrName: String, organizationId: String? = nil) async throws -> [Session] {
        let (machine, _) = try runningMachine(idOrName, organizationId: organizationId)
        var result: [Session] = []
        for id in (sessions[machine.id.rawValue] ?? [:]).keys.sorted() {
            result.append(try await getSession(idOrName, sessionId: id, organizationId: organizationId))
        }
        return result
    }

    public func getSession(_ idOrName: String, sessionId: String, organizationId: String? = nil) async throws -> Session {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        let state = try session(machine.id.rawValue, sessionId)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        let commands = state.commands
        return try await WorkPool.shared.run {
            Session(id: sessionId, commands: commands.map { command in
                SessionCommand(id: command.id, command: command.command, exitCode: Self.exitCode(files, "\(dir)/\(command.id).exit"))
            })
        }
    }

    /// The exit code a command recorded, or nil while it runs. Blocking: call it on the work pool.
    static func exitCode(_ files: SandboxFiles, _ path: String) -> Int32? {
        guard let bytes = try? files.read(path, limit: 64) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs a command in a session. Without `async`, waits for it and returns its exit code and
    /// output; with `async`, returns at once (the command's id is in the result).
    public func executeInSession(_ idOrName: String, sessionId: String, command: String, async runAsync: Bool,
                                 organizationId: String? = nil) async throws -> (command: SessionCommand, logs: SessionLogs?) {
        guard !command.isEmpty else { throw AtollError(.invalidArgument, "command is empty") }
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        _ = try session(sandbox, sessionId)
        let id = UUID().uuidString.lowercased()
        let dir = sessionDirectory(sessionId)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let line = "{ eval \"$(cat '\(dir)/\(id).cmd')\"; } > '\(dir)/\(id).out' 2> '\(dir)/\(id).err' < /dev/null; "
            + "echo $? > '\(dir)/\(id).exit.tmp'; mv -f '\(dir)/\(id).exit.tmp' '\(dir)/\(id).exit'\n"
        let text = Array(command.utf8)
        try await WorkPool.shared.run {
            try files.write("\(dir)/\(id).cmd", bytes: text, mode: 0o600)
            try files.writeToFifo("\(dir)/in", line)
        }
        sessions[sandbox]?[sessionId]?.commands.append((id, command))
        noteActivity(sandbox)
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
                noteActivity(sandbox)
                let logs = try await WorkPool.shared.run { Self.logs(files, dir, id) }
                return (SessionCommand(id: id, command: command, exitCode: code), logs)
            }
            guard sessions[sandbox]?[sessionId] != nil else {
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

    public func sessionCommand(_ idOrName: String, sessionId: String, commandId: String,
                               organizationId: String? = nil) async throws -> SessionCommand {
        let session = try await getSession(idOrName, sessionId: sessionId, organizationId: organizationId)
        guard let command = session.commands.first(where: { $0.id == commandId }) else {
            throw AtollError(.notFound, "command \(commandId.prefix(64)) not found in session \(sessionId)")
        }
        return command
    }

    public func sessionCommandLogs(_ idOrName: String, sessionId: String, commandId: String,
                                   organizationId: String? = nil) async throws -> SessionLogs {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        let state = try session(machine.id.rawValue, sessionId)
        guard state.commands.contains(where: { $0.id == commandId }) else {
            throw AtollError(.notFound, "command \(commandId.prefix(64)) not found in session \(sessionId)")
        }
        noteActivity(machine.id.rawValue)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        return try await WorkPool.shared.run { Self.logs(files, dir, commandId) }
    }

    /// Ends a session: its shell and everything it started are killed, its files removed.
    public func deleteSession(_ idOrName: String, sessionId: String, organizationId: String? = nil) async throws {
        let (machine, process) = try runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        let state = try session(sandbox, sessionId)
        sessions[sandbox]?[sessionId] = nil
        _ = try? await driver.exec(machine, initProcess: process, ExecRequest(
            command: .argv(["/bin/kill", "-KILL", "--", "-\(state.shellPid)"]), user: "root", timeout: 10), onOutput: nil)
        let files = try driver.files(machine, initProcess: process, user: nil)
        let dir = sessionDirectory(sessionId)
        _ = try? await WorkPool.shared.run { try files.delete(dir, recursive: true, missingOK: true) }
        noteActivity(sandbox)
    }
}
