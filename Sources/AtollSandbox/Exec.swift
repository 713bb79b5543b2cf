public import AtollCore
public import AtollLinux
import CRuntime

/// A process to run inside a started sandbox.
public struct ExecRequest: Sendable {
    public enum Command: Sendable {
        /// An argv; the program is an absolute path or looked up in PATH.
        case argv([String])
        /// A shell command, fed to `/bin/sh` on its standard input (as Daytona's toolbox does).
        case shell(String)
    }

    /// The user's login shell (its account's `SHELL`, which the agent sets), as a terminal starts
    /// it.
    public static let loginShell = ["/bin/sh", "-c", "exec \"${SHELL:-/bin/sh}\" -l"]

    public var command: Command
    /// Variables added to (and overriding) the sandbox's environment.
    public var env: [String: String]
    /// Working directory; defaults to the user's home.
    public var cwd: String?
    /// User name, uid or uid:gid; defaults to the sandbox's user (`sandbox`).
    public var user: String?
    /// Seconds before the whole process group is killed.
    public var timeout: Double?
    /// Standard input (not available with `.shell`, whose stdin carries the command).
    public var stdin: StdinSource
    /// Send stderr into the stdout stream (like `2>&1`).
    public var mergeOutput: Bool

    public init(
        command: Command, env: [String: String] = [:], cwd: String? = nil, user: String? = nil,
        timeout: Double? = nil, stdin: StdinSource = .none, mergeOutput: Bool = false
    ) {
        self.command = command
        self.env = env
        self.cwd = cwd
        self.user = user
        self.timeout = timeout
        self.stdin = stdin
        self.mergeOutput = mergeOutput
    }

    /// A process's timeout: more than 0, at most a day (Daytona's longest).
    public static func checkTimeout(_ timeout: Double?) throws(AtollError) {
        if let timeout, !(timeout > 0 && timeout <= 86400) {
            throw AtollError(.invalidArgument, "timeout must be between 0 and 86400 seconds, got \(timeout)")
        }
    }

    /// Checks what can be checked before touching the sandbox.
    func validate() throws {
        switch command {
        case .argv(let argv):
            guard let first = argv.first, !first.isEmpty else { throw AtollError(.invalidArgument, "command: argv must not be empty") }
            guard !argv.contains(where: { $0.utf8.contains(0) }) else {
                throw AtollError(.invalidArgument, "command: an argument contains a NUL byte")
            }
        case .shell(let script):
            guard !script.isEmpty else { throw AtollError(.invalidArgument, "command: the shell command is empty") }
            if case .none = stdin {
            } else {
                throw AtollError(.invalidArgument, "stdin: a shell command is read from stdin, so it cannot take other input")
            }
        }
        try EnvironmentValidation.validate(env, field: "env")
        try Self.checkTimeout(timeout)
        if let cwd, cwd.utf8.contains(0) || cwd.isEmpty {
            throw AtollError(.invalidArgument, "cwd must be a non-empty path")
        }
    }
}

/// Code to run with a language's interpreter.
public struct CodeRequest: Sendable {
    public var language: Language
    public var code: String
    /// Arguments for the program (`sys.argv[1:]`, `process.argv.slice(2)`).
    public var arguments: [String]
    public var env: [String: String]
    public var user: String?
    public var timeout: Double?
    public var stdin: StdinSource
    /// Send stderr into the stdout stream (Daytona's `result` is both).
    public var mergeOutput: Bool

    public init(
        language: Language, code: String, arguments: [String] = [], env: [String: String] = [:], user: String? = nil,
        timeout: Double? = nil, stdin: StdinSource = .none, mergeOutput: Bool = false
    ) {
        self.language = language
        self.code = code
        self.arguments = arguments
        self.env = env
        self.user = user
        self.timeout = timeout
        self.stdin = stdin
        self.mergeOutput = mergeOutput
    }
}

/// The outcome of an exec.
public struct ExecResult: Sendable {
    public var termination: Termination
    /// The timeout passed and the process group was killed.
    public var timedOut: Bool
    /// The OOM killer killed a process of the sandbox while this ran (the sandbox hit its memory limit).
    public var oomKilled: Bool
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var truncated: Bool
    public var seconds: Double

    public init(termination: Termination, timedOut: Bool, oomKilled: Bool, stdout: [UInt8], stderr: [UInt8], truncated: Bool, seconds: Double) {
        self.termination = termination
        self.timedOut = timedOut
        self.oomKilled = oomKilled
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated
        self.seconds = seconds
    }

    /// Exit code, or 128 + signal as a shell reports it.
    public var exitCode: Int32 { termination.shellStatus }

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// How each language's code runs inside the default snapshot: always a resolved interpreter path,
/// never a shim found on PATH.
public struct LanguageRuntime: Sendable {
    public var python: String
    public var node: String
    public var esbuild: String

    public init(snapshot: Snapshot) {
        self.init(
            python: snapshot.runtimes["python"] ?? "/usr/bin/python3", node: snapshot.runtimes["javascript"] ?? "/usr/bin/node",
            esbuild: snapshot.runtimes["typescript"] ?? "/usr/bin/esbuild")
    }

    public init(python: String = "/usr/bin/python3", node: String = "/usr/bin/node", esbuild: String = "/usr/bin/esbuild") {
        self.python = python
        self.node = node
        self.esbuild = esbuild
    }

    /// The argv that runs the program stored at `file` with `arguments`.
    public func command(_ language: Language, file: String, arguments: [String]) -> [String] {
        switch language {
        case .python:
            // -u: unbuffered, so output streams as it is produced.
            return [python, "-u", file] + arguments
        case .javascript:
            return [node, file] + arguments
        case .typescript:
            // Transpile (no type check, like ts-node --transpile-only), then run with node.
            let script = "\(esbuild) --log-level=warning --format=cjs --platform=node --loader=ts < \"$0\" > \"$0.js\" && exec \(node) \"$0.js\" \"$@\""
            return ["/bin/sh", "-c", script, file] + arguments
        }
    }

    /// Files the command leaves behind, removed after the run.
    public func scratchFiles(_ language: Language, file: String) -> [String] {
        language == .typescript ? [file, file + ".js"] : [file]
    }
}

/// The size of a terminal the agent makes: 1 to `maximum` rows and columns
/// (`ATOLL_PTY_MAX_SIZE`, Daytona's limit too), checked when made.
public struct TerminalSize: Sendable, Hashable {
    /// The most rows and the most columns a terminal may have.
    public static let maximum = Int(ATOLL_PTY_MAX_SIZE)

    public let rows: Int
    public let columns: Int

    public init(rows: Int, columns: Int) throws(AtollError) {
        let range = 1...Self.maximum
        guard range.contains(rows), range.contains(columns) else {
            throw AtollError(.invalidArgument, "terminal size \(columns)x\(rows) is outside 1..\(Self.maximum) columns and rows")
        }
        self.rows = rows
        self.columns = columns
    }
}

/// A program stored in a sandbox to be run by its language's interpreter: a new private file in
/// the sandbox's `/tmp` owned by the user, the argv that runs it, and the files to remove after.
public struct StagedCode: Sendable {
    public let argv: [String]
    public let scratch: [String]
    let files: SandboxFiles

    /// Writes `code` through `files` (the agent, as the sandbox's user). Blocking: call it on the
    /// work pool.
    public static func stage(
        _ code: String, language: Language, arguments: [String], runtime: LanguageRuntime, files: SandboxFiles
    ) throws -> StagedCode {
        let file = "/tmp/atoll-code-\(SandboxID.random().rawValue.prefix(13)).\(language.fileExtension)"
        try files.write(file, bytes: Array(code.utf8), mode: 0o600, exclusive: true)
        return StagedCode(argv: runtime.command(language, file: file, arguments: arguments), scratch: runtime.scratchFiles(language, file: file), files: files)
    }

    /// Removes the program's files (a sandbox stopped meanwhile has nothing left to remove).
    public func remove() async {
        let files = self.files
        let scratch = self.scratch
        _ = try? await WorkPool.shared.run { for path in scratch { try files.delete(path, recursive: false, missingOK: true) } }
    }
}
