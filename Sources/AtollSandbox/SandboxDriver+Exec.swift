import AtollCore
import AtollLinux
import Foundation
import Glibc

extension SandboxDriver {
    /// Handles of a started sandbox, taking them (pidfd by pid, checked by start time) when the
    /// sandbox was started by another process or before a restart.
    func handles(_ machine: SandboxMachine, initProcess: InitProcess) throws -> Live {
        if let cached = live.withLock({ $0[machine.id] }), cached.initProcess == initProcess { return cached }
        guard initProcess.isRunning else { throw AtollError(.conflict, "sandbox \(machine.id) is not running (its init \(initProcess.pid) is gone)") }
        let pidfd = try Pidfd.open(initProcess.pid)
        // The pidfd pins the process; check once more that it is the same one.
        guard initProcess.isRunning else { throw AtollError(.conflict, "sandbox \(machine.id) stopped while it was being adopted") }
        let handles = Live(initProcess: initProcess, handle: SandboxInit(pid: initProcess.pid, pidfd: pidfd), placement: try cgroups.placement(machine.id.rawValue))
        live.withLock { $0[machine.id] = handles }
        return handles
    }

    /// Runs a process in a started sandbox, through its init's namespaces and cgroup and under the
    /// same profile as the init (user namespace, capabilities, no_new_privs, seccomp). `onOutput`
    /// sees every chunk as it arrives; the result also holds the captured output.
    public func exec(_ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest,
                     onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?) async throws -> ExecResult {
        try request.validate()
        let handles = try self.handles(machine, initProcess: initProcess)
        let account = try Self.account(of: handles, user: request.user ?? machine.user)

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
        var cwd = request.cwd ?? account.home
        if !cwd.hasPrefix("/") { cwd = account.home + "/" + cwd }

        let pipes = try StdioPipes.make(mergeStderr: request.mergeOutput)
        let group = machine.id.rawValue
        let oomBefore = (try? cgroups.oomKills(group)) ?? 0
        let spec = ExecSpec(
            initPidfd: handles.handle.pidfd.raw, cgroup: handles.placement, executable: argv[0], arguments: argv,
            environment: Self.environment(machine: machine, account: account, extra: request.env), workingDirectory: cwd,
            stdin: pipes.stdinRead.raw, stdout: pipes.stdoutWrite.raw, stderr: pipes.stderrWrite?.raw ?? pipes.stdoutWrite.raw,
            identity: .user(uid: account.uid, gid: account.gid, groups: account.groups, rootCapabilities: rootCapabilities)
        )
        let pid = try withExtendedLifetime(handles) { try spawner.exec(spec) }
        // Only the child holds these ends now, so EOF arrives when it (and its descendants) exit.
        pipes.stdinRead.close()
        pipes.stdoutWrite.close()
        pipes.stderrWrite?.close()
        let pidfd: OwnedFD
        do {
            pidfd = try Pidfd.open(pid)
        } catch {
            _ = kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw error
        }
        let io = ProcessIO(
            pid: pid, pidfd: pidfd, stdinWrite: pipes.stdinWrite, stdoutRead: pipes.stdoutRead, stderrRead: pipes.stderrRead,
            stdin: stdin, timeout: request.timeout, captureLimit: configuration.captureLimitBytes, onOutput: onOutput
        )
        let outcome = await io.run()
        let oomAfter = (try? cgroups.oomKills(group)) ?? oomBefore
        return ExecResult(
            termination: outcome.termination, timedOut: outcome.timedOut,
            oomKilled: oomAfter > oomBefore && outcome.termination == .signaled(SIGKILL) && !outcome.timedOut,
            stdout: outcome.stdout, stderr: outcome.stderr, truncated: outcome.truncated, seconds: outcome.seconds
        )
    }

    /// Runs code with the language's interpreter (a resolved path in the snapshot). The program
    /// is written to a private file in the sandbox's `/tmp`, owned by the user, and removed after.
    public func runCode(_ machine: SandboxMachine, initProcess: InitProcess, _ request: CodeRequest,
                        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?) async throws -> ExecResult {
        let handles = try self.handles(machine, initProcess: initProcess)
        let account = try Self.account(of: handles, user: request.user ?? machine.user)
        let runtime = LanguageRuntime(snapshot: try snapshots.snapshot(named: machine.snapshot))
        let file = "/tmp/atoll-code-\(SandboxID.random().rawValue.prefix(13)).\(request.language.fileExtension)"
        do {
            // Closed at once: an open root would pin the sandbox's mounts past a stop.
            let root = try SandboxRoot(initPid: initProcess.pid, pidfd: handles.handle.pidfd.raw)
            defer { root.close() }
            try root.create(file, bytes: Array(request.code.utf8), hostUID: machine.ids.host(account.uid),
                            hostGID: machine.ids.host(account.gid), mode: 0o600)
        }
        let exec = ExecRequest(command: .argv(runtime.command(request.language, file: file, arguments: request.arguments)),
                               env: request.env, user: request.user, timeout: request.timeout, stdin: request.stdin,
                               mergeOutput: request.mergeOutput)
        let result: Result<ExecResult, any Error>
        do {
            result = .success(try await self.exec(machine, initProcess: initProcess, exec, onOutput: onOutput))
        } catch {
            result = .failure(error)
        }
        // The sandbox may have been stopped meanwhile; then there is nothing to clean up.
        if initProcess.isRunning, let root = try? SandboxRoot(initPid: initProcess.pid, pidfd: handles.handle.pidfd.raw) {
            for path in runtime.scratchFiles(request.language, file: file) { try? root.remove(path) }
            root.close()
        }
        return try result.get()
    }

    /// The account `user` names in the sandbox's own passwd and group files, read without
    /// following anything out of the sandbox.
    static func account(of handles: Live, user: String) throws -> SandboxAccount {
        let root = try SandboxRoot(initPid: handles.initProcess.pid, pidfd: handles.handle.pidfd.raw)
        defer { root.close() }
        return try accounts(in: root).resolve(user)
    }

    static func accounts(in root: SandboxRoot) -> PasswdDatabase {
        let passwd = (try? root.read("/etc/passwd", limit: 1 << 20)) ?? []
        let group = (try? root.read("/etc/group", limit: 1 << 20)) ?? []
        return PasswdDatabase(passwd: String(decoding: passwd, as: UTF8.self), group: String(decoding: group, as: UTF8.self))
    }

    /// The files of a started sandbox, acting for `user` (default the sandbox's user). Close it
    /// (release it) soon: an open root pins the sandbox's mounts.
    public func files(_ machine: SandboxMachine, initProcess: InitProcess, user: String? = nil) throws -> SandboxFiles {
        let handles = try self.handles(machine, initProcess: initProcess)
        let root = try SandboxRoot(initPid: initProcess.pid, pidfd: handles.handle.pidfd.raw)
        let accounts = Self.accounts(in: root)
        let owner: SandboxAccount
        do {
            owner = try accounts.resolve(user ?? machine.user)
        } catch {
            root.close()
            throw error
        }
        return SandboxFiles(root: root, ids: machine.ids, accounts: accounts, owner: owner)
    }

    /// The environment of an exec: login-like defaults, then the sandbox's, then the request's.
    static func environment(machine: SandboxMachine, account: SandboxAccount, extra: [String: String]) -> [String] {
        var env = [
            "PATH": ExecDefaults.path, "HOME": account.home, "USER": account.name, "LOGNAME": account.name,
            "SHELL": account.shell, "LANG": "C.UTF-8", "HOSTNAME": machine.id.rawValue,
        ]
        env.merge(machine.env) { $1 }
        env.merge(extra) { $1 }
        return env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
