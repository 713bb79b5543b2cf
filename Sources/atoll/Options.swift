import ArgumentParser
import AtollCore
import AtollLinux
import AtollRuntime
import AtollWire
import Foundation

/// Options every command that reaches sandboxes shares: where the daemon is, or the data
/// directory to run embedded on.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Atoll's data directory (embedded runner, and where the local atolld's URL and key are found; default $ATOLL_DATA_DIR, else /var/lib/atoll).")
    var dataDir: String = Self.defaultDataDirectory

    /// $ATOLL_DATA_DIR, else /var/lib/atoll.
    static var defaultDataDirectory: String {
        ProcessInfo.processInfo.environment["ATOLL_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? RuntimeConfiguration.defaultDataDirectory
    }

    /// The embedded runner must see the daemon's cgroups and network: it reads the same file.
    @Option(help: ArgumentHelp("atolld's configuration file (default $ATOLL_CONFIG, else \(Settings.defaultFile)).", valueName: "file"))
    var config: String?

    @Option(help: "atolld's URL, e.g. http://127.0.0.1:3986 (default: $ATOLL_URL, else the local daemon if it runs).")
    var url: String?

    @Option(help: ArgumentHelp("A file holding the API key for atolld (default: $ATOLL_API_KEY, else DATA_DIR/api-key).", valueName: "file"))
    var apiKeyFile: String?

    /// Refused: a key on the command line is readable by every user of the host (`ps`).
    @Option(help: .hidden)
    var apiKey: String?

    @Flag(help: "Run the runner in this process even if atolld is running (needs root).")
    var embedded = false

    /// Every command refuses a key on its command line, whichever backend it would use.
    func validate() throws {
        if apiKey != nil { throw ValidationError(SecretScrubbing.refuseKeyArgument(environmentVariable: "ATOLL_API_KEY").message) }
    }

    /// Opens the runner embedded in this process, reconciling what an earlier process left.
    func open(reconcile: Bool = true) async throws -> SandboxManager {
        // The daemon's settings (file, then environment): an embedded runner must see the same
        // cgroups and network, which `SettingsRecord` checks against the data directory.
        let settings = try await Settings.resolve(file: config)
        let manager = try await SandboxManager.open(configuration: .fromEnvironment(dataDirectory: dataDir, settings.values), reconcile: false)
        if reconcile {
            let report = await manager.reconcile()
            // A host setting changed on the user's behalf (IPv4 forwarding) is said out loud.
            for line in report.network { FileHandle.standardError.write(Data("atoll: \(line)\n".utf8)) }
            for line in report.failures where line.hasPrefix("sandbox networking") {
                FileHandle.standardError.write(Data("atoll: \(line)\n".utf8))
            }
        }
        return manager
    }
}

/// Prints an `AtollError` as `atoll: message` and exits with `status` (1; 125 for `atoll run`,
/// whose other statuses belong to the program).
func reportingErrors<T>(status: Int32 = 1, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as AtollError {
        FileHandle.standardError.write(Data("atoll: \(error)\n".utf8))
        throw ExitCode(status)
    }
}

/// Runs `body` with the chosen backend and closes it afterwards.
func withBackend<T>(_ options: RuntimeOptions, errorStatus: Int32 = 1, _ body: (any Backend) async throws -> T) async throws -> T {
    try await reportingErrors(status: errorStatus) {
        let backend = try await options.backend()
        do {
            let value = try await body(backend)
            await backend.close()
            return value
        } catch {
            await backend.close()
            throw error
        }
    }
}

/// The embedded runner only (administration: keys, gc).
func withRunner<T>(_ options: RuntimeOptions, reconcile: Bool = true, _ body: (SandboxManager) async throws -> T) async throws -> T {
    try await reportingErrors {
        let manager = try await options.open(reconcile: reconcile)
        do {
            let value = try await body(manager)
            await manager.close()
            return value
        } catch {
            await manager.close()
            throw error
        }
    }
}

/// `KEY=VALUE` pairs from repeated options.
func parsePairs(_ items: [String], option: String) throws -> [String: String] {
    var result: [String: String] = [:]
    for item in items {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw AtollError(.invalidArgument, "\(option) expects KEY=VALUE, got \"\(item)\"")
        }
        result[String(item[..<eq])] = String(item[item.index(after: eq)...])
    }
    return result
}

enum Output {
    static func json<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// One sandbox, as `key: value` lines.
    static func details(_ s: SandboxDTO) {
        var rows: [(String, String)] = [("id", s.id), ("name", s.name), ("state", s.state ?? "unknown")]
        if let reason = s.errorReason { rows.append(("error", "\(reason)\(s.recoverable == true ? " (recoverable)" : "")")) }
        let interval = { (minutes: Int?, zero: String) -> String in
            guard let minutes else { return "-" }
            return minutes == 0 ? zero : minutes < 0 ? "never" : "\(minutes) min"
        }
        rows += [
            ("resources", "\(s.cpu) vCPU, \(s.memory) GiB memory, \(s.disk) GiB disk"),
            ("language", s.labels[Language.labelKey] ?? "python"), ("user", s.user), ("snapshot", s.snapshot ?? "-"),
            ("labels", s.labels.filter { $0.key != Language.labelKey }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")),
            ("auto-stop", interval(s.autoStopInterval, "never")),
            ("auto-archive", interval(s.autoArchiveInterval, "30 days (maximum)")),
            ("auto-delete", interval(s.autoDeleteInterval, "on stop (ephemeral)")),
            ("network", s.networkBlockAll ? "blocked" : s.networkAllowList.map { "allow \($0)" } ?? "open"),
        ]
        if let created = s.createdAt { rows.append(("created", created)) }
        if let activity = s.lastActivityAt { rows.append(("last activity", activity)) }
        let width = rows.map(\.0.count).max() ?? 0
        for (key, value) in rows { print("\(key.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)") }
    }

    /// Sandboxes as a table.
    static func table(_ sandboxes: [SandboxDTO]) {
        let header = ["ID", "NAME", "STATE", "CPU", "MEM", "DISK", "LANGUAGE", "LABELS"]
        let rows = sandboxes.map { s in
            [
                s.id, s.name, s.state ?? "?", "\(s.cpu)", "\(s.memory)G", "\(s.disk)G", s.labels[Language.labelKey] ?? "python",
                s.labels.filter { $0.key != Language.labelKey }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
            ]
        }
        table(header, rows)
    }

    /// Rows under a header, columns padded to their widest cell.
    static func table(_ header: [String], _ rows: [[String]]) {
        let widths = (0..<header.count).map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        for row in [header] + rows {
            print(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }

    /// A progress line on standard error while a slow operation runs (only on a terminal).
    static func progress(_ what: String) -> @Sendable (Double) -> Void {
        let tty = isatty(STDERR_FILENO) == 1
        return { seconds in
            guard tty else { return }
            FileHandle.standardError.write(Data(String(format: "\r%@ … %.1f s", what, seconds).utf8))
        }
    }

    static func endProgress() {
        if isatty(STDERR_FILENO) == 1 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
