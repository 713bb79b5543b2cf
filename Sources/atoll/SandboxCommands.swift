import ArgumentParser
import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollWire
import Foundation
import Glibc

/// `atoll create`
struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a sandbox and start it.")

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Name (unique; defaults to the id).") var name: String?
    @Option(help: "Label KEY=VALUE (repeatable).") var label: [String] = []
    @Option(help: "Environment variable KEY=VALUE for every process (repeatable).") var env: [String] = []
    @Option(help: "python, typescript or javascript (default python).") var language: String?
    @Option(help: "Default user of execs (default sandbox).") var user: String?
    @Option(help: "vCPUs (default 1).") var cpu: Int?
    @Option(help: "Memory in GiB (default 1).") var memory: Int?
    @Option(help: "Disk in GiB (default 3).") var disk: Int?
    @Option(help: "Snapshot (default: default).") var snapshot: String?
    @Option(help: "Stop after this many idle minutes; 0 = never (default 15).") var autoStop: Int?
    @Option(help: "Archive after this many stopped minutes; 0 = 30 days (default 7 days).") var autoArchive: Int?
    @Option(help: "Delete after this many stopped minutes; -1 = never, 0 = on stop (default -1).") var autoDelete: Int?
    @Flag(help: "Delete the sandbox when it stops.") var ephemeral = false
    @Flag(help: "Block all network traffic.") var networkBlockAll = false
    @Option(help: "Comma-separated IPv4 CIDRs the sandbox may reach.") var networkAllowList: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await withBackend(runtime) { backend in
            var labels = try parsePairs(label, option: "--label")
            if let language { labels[Language.labelKey] = try Language(parsing: language).rawValue }
            let sandbox = try await backend.create(
                CreateSandboxRequest(
                    name: name, snapshot: snapshot, user: user, env: try parsePairs(env, option: "--env"), labels: labels,
                    networkBlockAll: networkBlockAll ? true : nil, networkAllowList: networkAllowList, cpu: cpu, memory: memory, disk: disk,
                    autoStopInterval: autoStop, autoArchiveInterval: autoArchive, autoDeleteInterval: ephemeral ? 0 : autoDelete))
            if json { try Output.json(sandbox) } else { print(sandbox.id) }
        }
    }
}

/// `atoll list`
struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List sandboxes, optionally those with given labels.")

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Only sandboxes with label KEY=VALUE (repeatable; all must match).") var label: [String] = []
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await withBackend(runtime) { backend in
            let sandboxes = try await backend.list(labels: try parsePairs(label, option: "--label"))
            if json { try Output.json(sandboxes) } else { Output.table(sandboxes) }
        }
    }
}

/// `atoll info`
struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a sandbox (by id or name).")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Also print the state history (embedded only).") var history = false

    func run() async throws {
        try await withBackend(runtime) { backend in
            let s = try await backend.get(sandbox)
            if json { return try Output.json(s) }
            Output.details(s)
            if history {
                guard let lines = try await backend.history(sandbox) else {
                    print("history: only with the embedded runner (--embedded)")
                    return
                }
                print("history:")
                for line in lines { print("  \(line)") }
            }
        }
    }
}

/// One lifecycle operation: start, stop, archive, recover or delete.
enum LifecycleOperation {
    case start
    case stop(force: Bool)
    case archive, recover, delete

    func perform(_ sandbox: String, runtime: RuntimeOptions, json: Bool) async throws {
        try await withBackend(runtime) { backend in
            let result: SandboxDTO
            switch self {
            case .start: result = try await backend.start(sandbox)
            case .stop(let force): result = try await backend.stop(sandbox, force: force)
            case .archive:
                result = try await backend.archive(sandbox, progress: Output.progress("archiving \(sandbox)"))
                Output.endProgress()
            case .recover: result = try await backend.recover(sandbox)
            case .delete: result = try await backend.delete(sandbox)
            }
            if json { try Output.json(result) } else { print("\(result.id) \(result.state ?? "?")") }
            if result.state == "error" {
                FileHandle.standardError.write(Data("atoll: \(result.errorReason ?? "the sandbox is in error")\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a stopped or archived sandbox.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await LifecycleOperation.start.perform(sandbox, runtime: runtime, json: json) }
}

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a sandbox (processes asked to end with SIGTERM, killed after 10 s; files kept).")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Kill every process at once, without the grace period.") var force = false
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await LifecycleOperation.stop(force: force).perform(sandbox, runtime: runtime, json: json) }
}

struct Archive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Archive a stopped sandbox (its filesystem goes to the object store).")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await LifecycleOperation.archive.perform(sandbox, runtime: runtime, json: json) }
}

struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recover a sandbox from a recoverable error.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await LifecycleOperation.recover.perform(sandbox, runtime: runtime, json: json) }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a sandbox and everything of it.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await LifecycleOperation.delete.perform(sandbox, runtime: runtime, json: json) }
}

/// `atoll resize`
struct Resize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Change a sandbox's resources: CPU and memory up while started, anything but a smaller disk while stopped.")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Option(help: "vCPUs.") var cpu: Int?
    @Option(help: "Memory in GiB.") var memory: Int?
    @Option(help: "Disk in GiB.") var disk: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await withBackend(runtime) { backend in
            let s = try await backend.resize(sandbox, cpu: cpu, memory: memory, disk: disk)
            if json { try Output.json(s) } else { Output.details(s) }
        }
    }
}

/// `atoll network`
struct Network: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Change a sandbox's egress: open, block all, or an allow list of IPv4 networks (live while started).",
        discussion: "atoll network my-box --block-all\natoll network my-box --allow 10.0.0.0/8,192.168.1.0/24\natoll network my-box --open")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Block all traffic (loopback only).") var blockAll = false
    @Option(help: "Comma-separated IPv4 CIDRs the sandbox may reach; nothing else.") var allow: String?
    @Flag(help: "Open egress (clears an allow list).") var open = false
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        let chosen = [blockAll, allow != nil, open].filter { $0 }.count
        guard chosen == 1 else { throw ValidationError("choose exactly one of --block-all, --allow and --open") }
    }

    func run() async throws {
        try await withBackend(runtime) { backend in
            let body = NetworkSettingsBody(networkBlockAll: blockAll ? true : open ? false : nil, networkAllowList: allow)
            let s = try await backend.setNetwork(sandbox, body)
            if json { try Output.json(s) } else { Output.details(s) }
        }
    }
}

/// `atoll labels`
struct Labels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replace a sandbox's labels.")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Argument(help: "KEY=VALUE labels (all of them: the old ones are replaced).") var labels: [String] = []

    func run() async throws {
        try await withBackend(runtime) { backend in
            var wanted = try parsePairs(labels, option: "labels")
            // Keep the language unless it is set explicitly, as the SDK keeps it.
            if wanted[Language.labelKey] == nil, let language = try await backend.get(sandbox).labels[Language.labelKey] {
                wanted[Language.labelKey] = language
            }
            let result = try await backend.setLabels(sandbox, wanted)
            print(result.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
    }
}

/// `atoll exec`
struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in a started sandbox and exit with its status.",
        discussion: """
            Output is printed as the command produces it. A command given after -- gets this
            terminal's standard input (-c only with -i).
            atoll exec my-box -- ls -la /
            atoll exec my-box -c 'echo $HOME | tr a-z A-Z'
            atoll exec -it my-box              (a terminal: the user's login shell)
            atoll exec -it my-box -- python3   (a terminal running python3)
            """)

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Option(name: .customShort("c"), help: "A shell command (run by /bin/sh).") var shell: String?
    @Argument(parsing: .postTerminator, help: "The command and its arguments (after --).") var command: [String] = []
    @Option(help: "User (name, uid or uid:gid; embedded only).") var user: String?
    @Option(help: "Working directory.") var cwd: String?
    @Option(help: "Environment variable KEY=VALUE (repeatable).") var env: [String] = []
    @Option(help: "Kill the command after this many seconds.") var timeout: Double?
    @Flag(name: .customShort("i"), help: "Forward standard input (always, for a command after --).") var interactive = false
    @Flag(name: .customShort("t"), help: "Run on a terminal (the size of this one, followed); keys go to it as typed.") var tty = false

    func validate() throws {
        if shell != nil && !command.isEmpty { throw ValidationError("give either -c SHELL-COMMAND or -- COMMAND [ARGS...], not both") }
        if shell == nil && command.isEmpty && !tty { throw ValidationError("give either -c SHELL-COMMAND or -- COMMAND [ARGS...] (or -t for a shell)") }
    }

    func run() async throws {
        let outcome: RunOutcome
        if tty {
            outcome = try await withBackend(runtime) { backend in
                let size = LocalTerminal.size() ?? (24, 80)
                var request = LiveExecRequest(
                    env: try parsePairs(env, option: "--env"), cwd: cwd, user: user, timeout: timeout, rows: size.rows, cols: size.columns)
                if let shell {
                    request.command = shell
                } else {
                    request.argv = command.isEmpty ? ExecRequest.loginShell : command
                }
                let restore = LocalTerminal.makeRaw()
                defer { restore?() }
                return try await backend.execLive(sandbox, request, forwardStdin: true, onOutput: OutputWriter.write)
            }
        } else {
            outcome = try await withBackend(runtime) { backend in
                try await backend.exec(
                    sandbox, shell.map { .shell($0) } ?? .argv(command), cwd: cwd, env: try parsePairs(env, option: "--env"),
                    user: user, timeout: timeout, forwardStdin: shell == nil || interactive, onOutput: OutputWriter.write)
            }
        }
        if outcome.timedOut {
            FileHandle.standardError.write(Data("atoll: killed after the \(timeout ?? 0) s timeout\n".utf8))
            throw ExitCode(124)
        }
        throw ExitCode(outcome.exitCode)
    }
}

/// `atoll code-run`
struct CodeRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "code-run", abstract: "Run code in a started sandbox with its language's interpreter.")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Option(name: .customShort("c"), help: "The program text.") var code: String?
    @Option(name: .customLong("file"), help: "A file holding the program ('-' for standard input).") var file: String?
    @Option(help: "python, typescript or javascript (default: the sandbox's language).") var language: String?
    @Argument(parsing: .postTerminator, help: "Arguments for the program (after --).") var arguments: [String] = []
    @Option(help: "Environment variable KEY=VALUE (repeatable).") var env: [String] = []
    @Option(help: "Kill the program after this many seconds.") var timeout: Double?

    func validate() throws {
        if (code == nil) == (file == nil) { throw ValidationError("give either -c CODE or --file FILE") }
    }

    func run() async throws {
        let outcome = try await withBackend(runtime) { backend in
            let program: String
            if let code {
                program = code
            } else if file == "-" {
                program = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: file!) else { throw AtollError(.notFound, "cannot read \(file!)") }
                program = String(decoding: data, as: UTF8.self)
            }
            return try await backend.codeRun(
                sandbox, language: try language.map { try Language(parsing: $0) }, code: program,
                arguments: arguments, env: try parsePairs(env, option: "--env"), timeout: timeout,
                forwardStdin: false, onOutput: OutputWriter.write)
        }
        if outcome.timedOut {
            FileHandle.standardError.write(Data("atoll: killed after the \(timeout ?? 0) s timeout\n".utf8))
            throw ExitCode(124)
        }
        throw ExitCode(outcome.exitCode)
    }
}

/// `atoll upload`
struct Upload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy a local file into a sandbox (parents are created).")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Argument(help: "Local file ('-' for standard input).") var source: String
    @Argument(help: "Path in the sandbox (relative paths start at the user's home).") var destination: String

    func run() async throws {
        try await withBackend(runtime) { backend in
            let data: Data
            if source == "-" {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                guard let contents = FileManager.default.contents(atPath: source) else { throw AtollError(.notFound, "cannot read \(source)") }
                data = contents
            }
            try await backend.upload(sandbox, data, to: destination)
            FileHandle.standardError.write(Data("atoll: uploaded \(data.count) bytes to \(destination)\n".utf8))
        }
    }
}

/// `atoll download`
struct Download: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy a file out of a sandbox.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Argument(help: "Path in the sandbox.") var source: String
    @Argument(help: "Local file ('-' or nothing for standard output).") var destination: String?

    func run() async throws {
        try await withBackend(runtime) { backend in
            let data = try await backend.download(sandbox, source)
            if let destination, destination != "-" {
                guard FileManager.default.createFile(atPath: destination, contents: data) else {
                    throw AtollError(.system, "cannot write \(destination)")
                }
            } else {
                OutputWriter.write(.stdout, [UInt8](data))
            }
        }
    }
}
