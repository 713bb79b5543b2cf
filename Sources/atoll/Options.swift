import ArgumentParser
import AtollCore
import AtollRuntime
import Foundation

/// Options every command that opens the runner shares.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Atoll's data directory.")
    var dataDir: String = RuntimeConfiguration.defaultDataDirectory

    /// Opens the runner embedded in this process (no daemon yet), reconciling what an earlier
    /// process left half-done.
    func open(reconcile: Bool = true) async throws -> SandboxManager {
        try await SandboxManager.open(configuration: .fromEnvironment(dataDirectory: dataDir), reconcile: reconcile)
    }
}

/// Runs a command body with the runner open, printing an `AtollError` as `atoll: message` and
/// exiting with status 1 (125 for `atoll run`, whose other statuses belong to the program).
func withRunner<T>(_ options: RuntimeOptions, errorStatus: Int32 = 1, reconcile: Bool = true,
                   _ body: (SandboxManager) async throws -> T) async throws -> T {
    do {
        let manager = try await options.open(reconcile: reconcile)
        do {
            let value = try await body(manager)
            await manager.close()
            return value
        } catch {
            await manager.close()
            throw error
        }
    } catch let error as AtollError {
        FileHandle.standardError.write(Data("atoll: \(error)\n".utf8))
        throw ExitCode(errorStatus)
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

/// The JSON form of a sandbox printed by `--json` (Daytona's field names where they exist).
struct SandboxJSON: Encodable {
    var id: String
    var name: String
    var organizationId: String
    var state: String
    var errorReason: String?
    var recoverable: Bool
    var snapshot: String
    var user: String
    var env: [String: String]
    var labels: [String: String]
    var cpu: Int
    var memory: Int
    var disk: Int
    var autoStopInterval: Int
    var autoArchiveInterval: Int
    var autoDeleteInterval: Int
    var networkBlockAll: Bool
    var networkAllowList: String?
    var initPid: Int32?
    var hostUidBase: UInt32
    var archiveBytes: UInt64?
    var createdAt: String
    var updatedAt: String
    var lastActivityAt: String

    init(_ s: Sandbox) {
        let iso = ISO8601DateFormatter()
        id = s.id.rawValue
        name = s.name
        organizationId = s.organizationId
        state = s.state.rawValue
        errorReason = s.errorReason
        recoverable = s.recoverable
        snapshot = s.snapshot
        user = s.user
        env = s.env
        labels = s.labels
        cpu = s.resources.cpu
        memory = s.resources.memoryGiB
        disk = s.resources.diskGiB
        autoStopInterval = s.intervals.autoStop
        autoArchiveInterval = s.intervals.autoArchive
        autoDeleteInterval = s.intervals.autoDelete
        networkBlockAll = s.network.blockAll
        networkAllowList = s.network.allowListText
        initPid = s.initPid
        hostUidBase = s.ids.base
        archiveBytes = s.archiveBytes
        createdAt = iso.string(from: s.createdAt)
        updatedAt = iso.string(from: s.updatedAt)
        lastActivityAt = iso.string(from: s.lastActivityAt)
    }
}

enum Output {
    static func json<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// One sandbox, as `key: value` lines.
    static func details(_ s: Sandbox) {
        var rows: [(String, String)] = [
            ("id", s.id.rawValue), ("name", s.name), ("state", s.state.rawValue),
        ]
        if let reason = s.errorReason { rows.append(("error", "\(reason)\(s.recoverable ? " (recoverable)" : "")")) }
        rows += [
            ("resources", "\(s.resources.cpu) vCPU, \(s.resources.memoryGiB) GiB memory, \(s.resources.diskGiB) GiB disk"),
            ("language", s.language.rawValue), ("user", s.user), ("snapshot", s.snapshot),
            ("labels", s.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")),
            ("auto-stop", s.intervals.autoStop == 0 ? "never" : "\(s.intervals.autoStop) min"),
            ("auto-archive", "\(s.intervals.effectiveAutoArchive) min"),
            ("auto-delete", s.intervals.autoDelete < 0 ? "never" : s.intervals.autoDelete == 0 ? "on stop (ephemeral)" : "\(s.intervals.autoDelete) min"),
            ("network", s.network.blockAll ? "blocked" : s.network.allowListText.map { "allow \($0)" } ?? "open"),
            ("host ids", "\(s.ids.base)-\(s.ids.base + s.ids.count - 1)"),
        ]
        if let pid = s.initPid { rows.append(("init pid", "\(pid)")) }
        if let bytes = s.archiveBytes { rows.append(("archive", "\(bytes) bytes")) }
        rows.append(("created", ISO8601DateFormatter().string(from: s.createdAt)))
        rows.append(("last activity", ISO8601DateFormatter().string(from: s.lastActivityAt)))
        let width = rows.map(\.0.count).max() ?? 0
        for (key, value) in rows { print("\(key.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)") }
    }

    /// Sandboxes as a table.
    static func table(_ sandboxes: [Sandbox]) {
        let header = ["ID", "NAME", "STATE", "CPU", "MEM", "DISK", "LANGUAGE", "LABELS"]
        let rows = sandboxes.map { s in
            [s.id.rawValue, s.name, s.state.rawValue, "\(s.resources.cpu)", "\(s.resources.memoryGiB)G", "\(s.resources.diskGiB)G",
             s.language.rawValue, s.labels.filter { $0.key != Language.labelKey }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
        }
        let widths = (0..<header.count).map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        for row in [header] + rows {
            print(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}
