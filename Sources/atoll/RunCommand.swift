import ArgumentParser
import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollWire
import CRuntime
import Foundation
import Glibc
import Synchronization

/// `atoll run`: runs a program in a fresh ephemeral sandbox and removes the sandbox afterwards.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Python, TypeScript or JavaScript program in a new ephemeral sandbox.",
        discussion: """
            The sandbox gets the default resources (1 vCPU, 1 GiB memory, 3 GiB disk) unless told
            otherwise, runs the program as the user `sandbox`, streams its output, and is deleted
            when the program ends or atoll is interrupted. The exit status is the program's.

              atoll run hello.py
              atoll run -c 'console.log(process.version)' --language javascript
              atoll run script.ts -- --some-flag value
            """
    )

    @Option(name: .shortAndLong, help: "python, typescript or javascript (default: from the file extension, else python).")
    var language: String?

    @Option(name: .customShort("c"), help: "Program text to run instead of a file.")
    var code: String?

    @Argument(help: "Program file to run ('-' reads the program from standard input).")
    var file: String?

    @Argument(parsing: .postTerminator, help: "Arguments passed to the program (after --).")
    var arguments: [String] = []

    @Option(help: "vCPUs for the sandbox.")
    var cpu: Int = Resources.defaults.cpu

    @Option(help: "Memory for the sandbox, in GiB.")
    var memory: Int = Resources.defaults.memoryGiB

    @Option(help: "Disk for the sandbox, in GiB.")
    var disk: Int = Resources.defaults.diskGiB

    @Option(help: "Kill the program after this many seconds.")
    var timeout: Double?

    @Option(help: "Environment variable KEY=VALUE for the program (repeatable).")
    var env: [String] = []

    @Option(help: "Snapshot to create the sandbox from.")
    var snapshot: String = "default"

    @OptionGroup var runtime: RuntimeOptions

    @Flag(help: "Print the sandbox id and timings to standard error.")
    var verbose = false

    func validate() throws {
        if (code == nil) == (file == nil) {
            throw ValidationError("give either a program file or -c CODE")
        }
    }

    func run() async throws {
        let exitCode: Int32
        do {
            exitCode = try await runProgram()
        } catch let error as AtollError {
            FileHandle.standardError.write(Data("atoll: \(error)\n".utf8))
            throw ExitCode(125)
        }
        throw ExitCode(exitCode)
    }

    func runProgram() async throws -> Int32 {
        let language = try resolveLanguage()
        let program = try readProgram()
        let environment = try parsePairs(env, option: "--env")
        let started = Monotonic.now()
        return try await withBackend(runtime, errorStatus: 125) { backend in
            if let embedded = backend as? EmbeddedBackend {
                return try await runEmbedded(embedded.manager, language: language, program: program, environment: environment, started: started)
            }
            return try await runRemote(backend, language: language, program: program, environment: environment, started: started)
        }
    }

    /// In this process: the sandbox is tied to this process (a later run reclaims it after
    /// kill -9), output streams as it comes, and standard input is forwarded.
    func runEmbedded(
        _ manager: SandboxManager, language: Language, program: String, environment: [String: String],
        started: Double
    ) async throws -> Int32 {
        let id = SandboxID.random()
        let cleanup = InterruptCleanup { _ = try? await manager.delete(id.rawValue) }
        try cleanup.install()
        let sandbox = try await manager.create(
            CreateParameters(
                labels: ["atoll-run": "true"], language: language, resources: Resources(cpu: cpu, memoryGiB: memory, diskGiB: disk),
                snapshot: snapshot, ephemeral: true, ownedByCurrentProcess: true, id: id
            ))
        if verbose { log("sandbox \(sandbox.id) started in \(ms(since: started)) ms") }
        let ran = Monotonic.now()
        let result: ExecResult
        do {
            result = try await manager.runCode(
                id.rawValue,
                CodeRequest(
                    language: language, code: program, arguments: arguments, env: environment, timeout: timeout,
                    stdin: file == "-" ? .none : .forward(STDIN_FILENO)),
                onOutput: OutputWriter.write)
        } catch {
            if cleanup.interrupted { try await Task.sleep(for: .seconds(3600)) }
            _ = try? await manager.delete(id.rawValue)
            throw error
        }
        // Interrupted: the signal thread removes the sandbox and exits with the signal's status.
        if cleanup.interrupted { try await Task.sleep(for: .seconds(3600)) }
        if verbose { log("program finished in \(ms(since: ran)) ms") }
        let removing = Monotonic.now()
        try await manager.delete(id.rawValue)
        if verbose { log("sandbox removed in \(ms(since: removing)) ms") }
        return status(exitCode: result.exitCode, timedOut: result.timedOut, oomKilled: result.oomKilled)
    }

    /// Through atolld: an ephemeral sandbox, the program run with code-run (its output arrives
    /// when it ends; standard input is not forwarded), then deleted — also on Ctrl-C.
    func runRemote(
        _ backend: any Backend, language: Language, program: String, environment: [String: String],
        started: Double
    ) async throws -> Int32 {
        let sandbox = try await backend.create(
            CreateSandboxRequest(
                snapshot: snapshot, labels: ["atoll-run": "true", Language.labelKey: language.rawValue], cpu: cpu, memory: memory, disk: disk,
                autoDeleteInterval: 0))
        let cleanup = InterruptCleanup { _ = try? await backend.delete(sandbox.id) }
        try cleanup.install()
        if verbose { log("sandbox \(sandbox.id) started through \(backend.description) in \(ms(since: started)) ms") }
        let outcome: RunOutcome
        do {
            outcome = try await backend.codeRun(
                sandbox.id, language: language, code: program, arguments: arguments, env: environment,
                timeout: timeout, forwardStdin: false, onOutput: OutputWriter.write)
        } catch {
            if cleanup.interrupted { try await Task.sleep(for: .seconds(3600)) }
            _ = try? await backend.delete(sandbox.id)
            throw error
        }
        if cleanup.interrupted { try await Task.sleep(for: .seconds(3600)) }
        _ = try await backend.delete(sandbox.id)
        return status(exitCode: outcome.exitCode, timedOut: outcome.timedOut, oomKilled: false)
    }

    func status(exitCode: Int32, timedOut: Bool, oomKilled: Bool) -> Int32 {
        if timedOut {
            log("killed after the \(timeout ?? 0) s timeout")
            return 124
        }
        if oomKilled { log("the program ran out of memory (\(memory) GiB) and was killed") }
        return exitCode
    }

    func resolveLanguage() throws -> Language {
        if let language { return try Language(parsing: language) }
        if let file, let byExtension = Language.forFileName(file) { return byExtension }
        return .default
    }

    func readProgram() throws -> String {
        if let code { return code }
        guard let file else { return "" }
        if file == "-" { return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw AtollError(.notFound, "cannot read \(file)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("atoll: \(message)\n".utf8))
    }

    func ms(since start: Double) -> Int { Int(((Monotonic.now() - start) * 1000).rounded()) }
}

/// Deletes the run's sandbox when atoll is interrupted (Ctrl-C, SIGTERM, SIGHUP), then exits
/// with 128 + the signal number. The signals arrive through the shim's signal pipe on a thread
/// of their own, so no Swift code runs in a signal handler.
final class InterruptCleanup: Sendable {
    let cleanup: @Sendable () async -> Void
    private let state = Mutex(false)

    /// Whether a signal arrived; the cleanup thread then owns the rest of the process's life.
    var interrupted: Bool { state.withLock { $0 } }

    init(_ cleanup: @escaping @Sendable () async -> Void) {
        self.cleanup = cleanup
    }

    func install() throws {
        var failure = atoll_error()
        let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
        let fd = atoll_signal_pipe(signals, Int32(signals.count), &failure)
        guard fd >= 0 else { throw SystemError.error(failure) }
        let thread = Thread { [self] in
            var byte: UInt8 = 0
            while Glibc.read(fd, &byte, 1) != 1 {}
            self.state.withLock { $0 = true }
            let done = DispatchSemaphore(value: 0)
            Task {
                // Embedded, the actor runs this after a create in progress finishes, so nothing escapes.
                await self.cleanup()
                done.signal()
            }
            done.wait()
            exit(128 + Int32(byte))
        }
        thread.name = "atoll-signals"
        thread.start()
    }
}

/// Writes output chunks straight to a file descriptor, retrying short writes.
enum OutputWriter {
    /// Standard output or error, by channel.
    @Sendable static func write(_ channel: OutputChannel, _ bytes: [UInt8]) {
        write(bytes, to: channel == .stdout ? STDOUT_FILENO : STDERR_FILENO)
    }

    static func write(_ bytes: [UInt8], to fd: Int32) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
