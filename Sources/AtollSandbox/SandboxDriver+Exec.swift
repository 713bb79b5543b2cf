import AtollCore
public import AtollLinux
import CRuntime
import Foundation
import Glibc
import Synchronization

extension SandboxDriver {
    /// Handles of a started sandbox, taking them (pidfd by pid, checked by start time) when the
    /// sandbox was started by another process or before a restart.
    func handles(_ machine: SandboxMachine, initProcess: InitProcess) throws -> Live {
        if let cached = live.withLock({ $0[machine.id] }), cached.initProcess == initProcess { return cached }
        guard initProcess.isRunning else { throw AtollError(.conflict, "sandbox \(machine.id) is not running (its init \(initProcess.pid) is gone)") }
        let pidfd = try Pidfd.open(initProcess.pid)
        // The pidfd pins the process; check once more that it is the same one.
        guard initProcess.isRunning else { throw AtollError(.conflict, "sandbox \(machine.id) stopped while it was being adopted") }
        let handles = Live(
            initProcess: initProcess, handle: SandboxInit(pid: initProcess.pid, pidfd: pidfd), placement: try cgroups.placement(machine.id.rawValue))
        live.withLock { $0[machine.id] = handles }
        return handles
    }

    /// Runs a process in a started sandbox. The sandbox's agent starts it — inside the sandbox's
    /// namespaces and cgroup, as the requested user of the sandbox's own `/etc/passwd`, under the
    /// sandbox's profile (capabilities, no_new_privs, seccomp) — so nothing of this process enters
    /// the sandbox. `onOutput` sees every chunk as it arrives; the result also holds the captured
    /// output.
    public func exec(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ExecResult {
        try request.validate()
        _ = try handles(machine, initProcess: initProcess)
        let argv: [String]
        let stdin: StdinSource
        switch request.command {
        case .argv(let arguments):
            argv = arguments
            stdin = request.stdin
        case .shell(let script):
            argv = ["/bin/sh"]
            stdin = .bytes(Array(script.utf8))
        }
        let env = Self.environment(machine: machine, extra: request.env)
        let message = AgentMessage(
            .exec, numbers: [Int64(argv.count), Int64(env.count), Int64(ATOLL_EXEC_ACCOUNT_ENV.rawValue)],
            strings: [request.user ?? machine.user, request.cwd ?? workingDirectory(machine), argv[0]] + argv + env)
        let pipes = try StdioPipes.make(mergeStderr: request.mergeOutput)
        let group = machine.id.rawValue
        let oomBefore = (try? cgroups.oomKills(group)) ?? 0
        let outcome: ProcessOutcome
        do {
            outcome = try await AgentProcess.run(
                directory: configuration.sandboxDirectory(machine.id), sandbox: machine.id.rawValue, request: message, pipes: pipes, stdin: stdin,
                timeout: request.timeout, captureLimit: configuration.captureLimitBytes, onOutput: onOutput)
        } catch let error as AtollError {
            if case .shell = request.command { throw Self.missingProgram(error, shell: true) }
            throw Self.missingProgram(error, shell: false)
        }
        let oomAfter = (try? cgroups.oomKills(group)) ?? oomBefore
        return ExecResult(
            termination: outcome.termination, timedOut: outcome.timedOut,
            oomKilled: oomAfter > oomBefore && outcome.termination == .signaled(SIGKILL) && !outcome.timedOut,
            stdout: outcome.stdout, stderr: outcome.stderr, truncated: outcome.truncated, seconds: outcome.seconds
        )
    }

    /// Starts a process that runs while the caller talks to it through `input` (stdin, signals,
    /// terminal sizes), its output going to `onOutput` as it comes. With `terminal` (rows,
    /// columns) it gets a new pseudo-terminal of the sandbox's own devpts as stdin, stdout, stderr
    /// and controlling terminal (output arrives as `.stdout`); without, pipes. The request's
    /// `stdin` is ignored (input is `input`).
    public func startLive(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest, terminal: TerminalSize?,
        input: LiveInput, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> LiveProcess {
        try request.validate()
        _ = try handles(machine, initProcess: initProcess)
        var argv: [String]
        switch request.command {
        case .argv(let arguments): argv = arguments
        case .shell(let script): argv = ["/bin/sh", "-c", script]
        }
        var flags = Int64(ATOLL_EXEC_ACCOUNT_ENV.rawValue)
        var numbers: [Int64] = []
        if let terminal {
            flags |= Int64(ATOLL_EXEC_PTY.rawValue)
            numbers = [Int64(terminal.rows), Int64(terminal.columns)]
        }
        var extra = request.env
        if terminal != nil && extra["TERM"] == nil && machine.env["TERM"] == nil { extra["TERM"] = "xterm-256color" }
        let env = Self.environment(machine: machine, extra: extra)
        let message = AgentMessage(
            .exec, numbers: [Int64(argv.count), Int64(env.count), flags] + numbers,
            strings: [request.user ?? machine.user, request.cwd ?? workingDirectory(machine), argv[0]] + argv + env)
        do {
            return try await AgentProcess.startLive(
                directory: configuration.sandboxDirectory(machine.id), sandbox: machine.id.rawValue, request: message,
                pipes: terminal == nil ? try StdioPipes.make(mergeStderr: request.mergeOutput) : nil, input: input,
                timeout: request.timeout, onOutput: onOutput)
        } catch let error as AtollError {
            if case .shell = request.command { throw Self.missingProgram(error, shell: true) }
            throw Self.missingProgram(error, shell: false)
        }
    }

    /// The image's working directory for processes that name none ("" = the user's home). Cached:
    /// a registered snapshot never changes under its id.
    func workingDirectory(_ machine: SandboxMachine) -> String {
        if let known = workingDirectories.withLock({ $0[machine.snapshot] }) { return known }
        let directory = (try? snapshots.snapshot(named: machine.snapshot))?.workingDirectory ?? ""
        workingDirectories.withLock { $0[machine.snapshot] = directory }
        return directory
    }

    /// A program the image does not have (execve's ENOENT), said as such: which program, and
    /// that shell commands need /bin/sh.
    static func missingProgram(_ error: AtollError, shell: Bool) -> AtollError {
        guard let call = error.systemCall, call.call == "execve", call.errno == ENOENT else { return error }
        let need = shell ? " (shell commands run with /bin/sh, which the image lacks; pass an argv instead)" : ""
        return AtollError(error.code, "\(call.path) is not in this sandbox's image\(need): \(error.message)", cause: error.cause)
    }

    public func languageRuntime(_ machine: SandboxMachine) throws -> LanguageRuntime {
        LanguageRuntime(snapshot: try snapshots.snapshot(named: machine.snapshot))
    }

    /// Runs code with the language's interpreter (a resolved path in the snapshot). The program
    /// is written by the agent to a new private file in the sandbox's `/tmp`, owned by the user,
    /// and removed after.
    public func runCode(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: CodeRequest,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ExecResult {
        let files = try self.files(machine, initProcess: initProcess, user: request.user)
        let runtime = try languageRuntime(machine)
        let staged = try await WorkPool.shared.run {
            try StagedCode.stage(request.code, language: request.language, arguments: request.arguments, runtime: runtime, files: files)
        }
        let exec = ExecRequest(
            command: .argv(staged.argv),
            env: request.env, user: request.user, timeout: request.timeout, stdin: request.stdin,
            mergeOutput: request.mergeOutput)
        let result: Result<ExecResult, any Error>
        do {
            result = .success(try await self.exec(machine, initProcess: initProcess, exec, onOutput: onOutput))
        } catch let error as AtollError where error.systemCall?.call == "execve" && error.systemCall?.errno == ENOENT {
            // An image without the language's interpreter: say which language needs what.
            result = .failure(
                AtollError(
                    error.code, "this sandbox's image has no \(request.language.rawValue) interpreter at \(staged.argv[0]) (execve: ENOENT)",
                    cause: error.cause))
        } catch {
            result = .failure(error)
        }
        // The sandbox may have been stopped meanwhile; then there is nothing to clean up.
        if initProcess.isRunning { await staged.remove() }
        return try result.get()
    }

    /// The files of a started sandbox, acting for `user` (default the sandbox's user), through its
    /// agent.
    public func files(_ machine: SandboxMachine, initProcess: InitProcess, user: String? = nil) throws -> SandboxFiles {
        _ = try handles(machine, initProcess: initProcess)
        return SandboxFiles(directory: configuration.sandboxDirectory(machine.id), sandbox: machine.id.rawValue, user: user ?? machine.user)
    }

    /// The environment of an exec: defaults, then the sandbox's, then the request's. HOME, USER,
    /// LOGNAME and SHELL come from the user's account inside the sandbox (the agent adds them
    /// unless one of these sets them).
    static func environment(machine: SandboxMachine, extra: [String: String]) -> [String] {
        var env = ["PATH": ExecDefaults.path, "LANG": "C.UTF-8", "HOSTNAME": machine.id.rawValue]
        env.merge(machine.env) { $1 }
        env.merge(extra) { $1 }
        return env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
