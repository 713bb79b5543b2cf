import ArgumentParser
import AtollCore
import AtollRuntime
import AtollSandbox
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
    @Option(help: "Stop after this many idle minutes; 0 = never (default 15).") var autoStop: Int = 15
    @Option(help: "Archive after this many stopped minutes; 0 = 30 days (default 7 days).") var autoArchive: Int = 7 * 24 * 60
    @Option(help: "Delete after this many stopped minutes; -1 = never, 0 = on stop (default -1).") var autoDelete: Int = -1
    @Flag(help: "Delete the sandbox when it stops.") var ephemeral = false
    @Flag(help: "Block all network traffic.") var networkBlockAll = false
    @Option(help: "Comma-separated IPv4 CIDRs the sandbox may reach.") var networkAllowList: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await withRunner(runtime) { manager in
            let resources = Resources(cpu: cpu ?? Resources.defaults.cpu, memoryGiB: memory ?? Resources.defaults.memoryGiB,
                                      diskGiB: disk ?? Resources.defaults.diskGiB)
            let sandbox = try await manager.create(CreateParameters(
                name: name, labels: try parsePairs(label, option: "--label"), env: try parsePairs(env, option: "--env"),
                language: try language.map { try Language(parsing: $0) }, user: user, resources: resources, snapshot: snapshot,
                intervals: LifecycleIntervals(autoStop: autoStop, autoArchive: autoArchive, autoDelete: autoDelete), ephemeral: ephemeral,
                network: NetworkPolicy(blockAll: networkBlockAll, allowList: try networkAllowList.map { try NetworkPolicy.parseAllowList($0) })
            ))
            if json { try Output.json(SandboxJSON(sandbox)) } else { print(sandbox.id) }
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
        try await withRunner(runtime) { manager in
            let sandboxes = try await manager.list(labels: try parsePairs(label, option: "--label"))
            if json { try Output.json(sandboxes.map(SandboxJSON.init)) } else { Output.table(sandboxes) }
        }
    }
}

/// `atoll info`
struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a sandbox (by id or name).")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Also print the state history.") var history = false

    func run() async throws {
        try await withRunner(runtime) { manager in
            let s = try await manager.get(sandbox)
            if json { return try Output.json(SandboxJSON(s)) }
            Output.details(s)
            if history {
                print("history:")
                let iso = ISO8601DateFormatter()
                for t in try await manager.history(sandbox) {
                    print("  \(iso.string(from: Date(timeIntervalSince1970: t.at)))  \(t.fromState ?? "-") -> \(t.toState)  \(t.reason ?? "")")
                }
            }
        }
    }
}

/// `atoll start|stop|archive|recover|delete`: one lifecycle operation.
struct Lifecycle: AsyncParsableCommand {
    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case start, stop, archive, recover, delete
    }

    static let configuration = CommandConfiguration(
        commandName: "lifecycle", abstract: "Start, stop, archive, recover or delete a sandbox.", shouldDisplay: false)

    @OptionGroup var runtime: RuntimeOptions
    @Argument var operation: Operation
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await Self.perform(operation, sandbox: sandbox, runtime: runtime, json: json)
    }

    static func perform(_ operation: Operation, sandbox: String, runtime: RuntimeOptions, json: Bool) async throws {
        try await withRunner(runtime) { manager in
            let result: Sandbox
            switch operation {
            case .start: result = try await manager.start(sandbox)
            case .stop: result = try await manager.stop(sandbox)
            case .archive:
                _ = try await manager.archive(sandbox)
                // Embedded, the archive runs in this process: finish it before exiting.
                try await manager.waitForBackgroundWork(sandbox)
                result = try await manager.get(sandbox)
            case .recover: result = try await manager.recover(sandbox)
            case .delete: result = try await manager.delete(sandbox)
            }
            if json { try Output.json(SandboxJSON(result)) } else { print("\(result.id) \(result.state.rawValue)") }
        }
    }
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a stopped or archived sandbox.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await Lifecycle.perform(.start, sandbox: sandbox, runtime: runtime, json: json) }
}

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a sandbox (processes killed, files kept).")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await Lifecycle.perform(.stop, sandbox: sandbox, runtime: runtime, json: json) }
}

struct Archive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Archive a stopped sandbox (its filesystem goes to the object store).")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await Lifecycle.perform(.archive, sandbox: sandbox, runtime: runtime, json: json) }
}

struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recover a sandbox from a recoverable error.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await Lifecycle.perform(.recover, sandbox: sandbox, runtime: runtime, json: json) }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a sandbox and everything of it.")
    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Flag(help: "Print JSON.") var json = false
    func run() async throws { try await Lifecycle.perform(.delete, sandbox: sandbox, runtime: runtime, json: json) }
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
        try await withRunner(runtime) { manager in
            let s = try await manager.resize(sandbox, cpu: cpu, memoryGiB: memory, diskGiB: disk)
            if json { try Output.json(SandboxJSON(s)) } else { Output.details(s) }
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
        try await withRunner(runtime) { manager in
            var wanted = try parsePairs(labels, option: "labels")
            // Keep the language unless it is set explicitly, as the SDK keeps it.
            let current = try await manager.get(sandbox)
            if wanted[Language.labelKey] == nil, let language = current.labels[Language.labelKey] { wanted[Language.labelKey] = language }
            let s = try await manager.setLabels(sandbox, wanted)
            print(s.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
    }
}

/// `atoll exec`
struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in a started sandbox.",
        discussion: "atoll exec my-box -- ls -la /\natoll exec my-box -c 'echo $HOME | tr a-z A-Z'")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Option(name: .customShort("c"), help: "A shell command (run by /bin/sh).") var shell: String?
    @Argument(parsing: .postTerminator, help: "The command and its arguments (after --).") var command: [String] = []
    @Option(help: "User (name, uid or uid:gid).") var user: String?
    @Option(help: "Working directory.") var cwd: String?
    @Option(help: "Environment variable KEY=VALUE (repeatable).") var env: [String] = []
    @Option(help: "Kill the command after this many seconds.") var timeout: Double?

    func validate() throws {
        if (shell == nil) == command.isEmpty { throw ValidationError("give either -c SHELL-COMMAND or -- COMMAND [ARGS...]") }
    }

    func run() async throws {
        let result = try await withRunner(runtime) { manager in
            try await manager.exec(
                sandbox,
                ExecRequest(command: shell.map { .shell($0) } ?? .argv(command), env: try parsePairs(env, option: "--env"), cwd: cwd,
                            user: user, timeout: timeout, stdin: shell == nil ? .forward(STDIN_FILENO) : .none),
                onOutput: { channel, bytes in OutputWriter.write(bytes, to: channel == .stdout ? STDOUT_FILENO : STDERR_FILENO) }
            )
        }
        if result.timedOut {
            FileHandle.standardError.write(Data("atoll: killed after the \(timeout ?? 0) s timeout\n".utf8))
            throw ExitCode(124)
        }
        throw ExitCode(result.exitCode)
    }
}
