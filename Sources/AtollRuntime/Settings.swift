import AtollCore
import Configuration
public import Foundation
import SystemPackage

/// One setting of atolld and the embedded CLI: its key in the configuration file (dotted keys
/// are nested JSON objects: `network.subnet` is `{"network": {"subnet": …}}`), the environment
/// variable that overrides the file, its JSON type and what it does. `docs/configuration.md`
/// lists this table; a test checks the two agree.
public struct Setting: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case string, integer, number
    }

    public var key: String
    public var environment: String
    public var kind: Kind
    /// Settings two processes sharing a data directory must agree on: they name the cgroups,
    /// the network and the host ids the sandboxes of that directory use. Recorded in the data
    /// directory on first use (`SettingsRecord`).
    public var mustAgree: Bool

    init(_ key: String, _ environment: String, _ kind: Kind, mustAgree: Bool = false) {
        self.key = key
        self.environment = environment
        self.kind = kind
        self.mustAgree = mustAgree
    }
}

/// Where settings come from, in the order users expect: the configuration file, then the
/// environment, then command-line flags (each overriding the one before), then the built-in
/// default. Read with swift-configuration: its JSON file provider, layered under in-memory
/// providers for the environment and the flags.
public enum Settings {
    /// The configuration file read when none is named: shared by atolld and the `atoll` CLI, so
    /// an embedded runner sees what the daemon sees. Missing is fine; a named file must exist.
    public static let defaultFile = "/etc/atoll/atoll.json"

    /// Every setting. The runner's defaults are in `RuntimeConfiguration`, the HTTP server's in
    /// `ConnectionLimits`, atolld's in its options.
    public static let all: [Setting] = [
        Setting("dataDir", "ATOLL_DATA_DIR", .string),
        Setting("listen", "ATOLLD_LISTEN", .string),
        Setting("previewDomain", "ATOLLD_PREVIEW_DOMAIN", .string),
        Setting("previewAnswerTimeout", "ATOLLD_PREVIEW_ANSWER_TIMEOUT", .integer),
        Setting("logLevel", "ATOLLD_LOG_LEVEL", .string),
        Setting("sweepInterval", "ATOLLD_SWEEP_INTERVAL", .number),
        Setting("snapshotsDir", "ATOLL_SNAPSHOTS_DIR", .string),
        Setting("cgroup.name", "ATOLL_CGROUP_NAME", .string, mustAgree: true),
        Setting("ids.rangeStart", "ATOLL_ID_RANGE_START", .integer, mustAgree: true),
        Setting("network.mode", "ATOLL_NETWORK", .string, mustAgree: true),
        Setting("network.bridge", "ATOLL_BRIDGE", .string, mustAgree: true),
        Setting("network.subnet", "ATOLL_SUBNET", .string, mustAgree: true),
        Setting("network.namespace", "ATOLL_NETNS", .string, mustAgree: true),
        Setting("pidsMax", "ATOLL_PIDS_MAX", .integer),
        Setting("limits.maxCPU", "ATOLL_MAX_CPU", .integer),
        Setting("limits.maxMemoryGiB", "ATOLL_MAX_MEMORY_GIB", .integer),
        Setting("limits.maxDiskGiB", "ATOLL_MAX_DISK_GIB", .integer),
        Setting("capacity.cpuOvercommit", "ATOLL_CPU_OVERCOMMIT", .number),
        Setting("capacity.memoryOvercommit", "ATOLL_MEMORY_OVERCOMMIT", .number),
        Setting("capacity.diskOvercommit", "ATOLL_DISK_OVERCOMMIT", .number),
        Setting("quota.maxCPU", "ATOLL_ORG_MAX_CPU", .integer),
        Setting("quota.maxMemoryGiB", "ATOLL_ORG_MAX_MEMORY_GIB", .integer),
        Setting("quota.maxDiskGiB", "ATOLL_ORG_MAX_DISK_GIB", .integer),
        Setting("quota.maxSandboxes", "ATOLL_ORG_MAX_SANDBOXES", .integer),
        Setting("toolbox.concurrency", "ATOLL_TOOLBOX_CONCURRENCY", .integer),
        Setting("warmPool", "ATOLL_WARM_POOL", .string),
        Setting("registry.mirrors", "ATOLL_REGISTRY_MIRRORS", .string),
        Setting("registry.insecure", "ATOLL_INSECURE_REGISTRIES", .string),
        Setting("usage.detailSeconds", "ATOLL_USAGE_DETAIL_SECONDS", .number),
        Setting("usage.retentionDays", "ATOLL_USAGE_RETENTION_DAYS", .number),
        Setting("prices.vcpuSecond", "ATOLL_PRICE_VCPU_SECOND", .number),
        Setting("prices.memoryGiBSecond", "ATOLL_PRICE_MEMORY_GIB_SECOND", .number),
        Setting("prices.diskGiBSecond", "ATOLL_PRICE_DISK_GIB_SECOND", .number),
        Setting("prices.archiveGiBMonth", "ATOLL_PRICE_ARCHIVE_GIB_MONTH", .number),
        Setting("prices.currency", "ATOLL_PRICE_CURRENCY", .string),
        Setting("http.maxConnections", "ATOLL_HTTP_MAX_CONNECTIONS", .integer),
        Setting("http.maxConnectionsPerPeer", "ATOLL_HTTP_MAX_CONNECTIONS_PER_PEER", .integer),
        Setting("http.idleSeconds", "ATOLL_HTTP_IDLE_SECONDS", .integer),
        Setting("http.stallSeconds", "ATOLL_HTTP_STALL_SECONDS", .integer),
    ]

    /// The settings in effect, as text by environment variable name (the form the parsers of
    /// `RuntimeConfiguration` and `ConnectionLimits` take), plus where each came from.
    /// - Parameters:
    ///   - file: a configuration file named by the user (`--config`, `ATOLL_CONFIG`): it must
    ///     exist. Without one, `defaultFile` is read if it exists.
    ///   - flags: values given on the command line, by setting key.
    public static func resolve(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        flags: [String: String] = [:]
    ) async throws -> ResolvedSettings {
        let named = file ?? environment["ATOLL_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let path = named ?? defaultFile
        let fileProvider: FileProvider<JSONSnapshot>
        do {
            fileProvider = try await FileProvider<JSONSnapshot>(filePath: FilePath(path), allowMissing: named == nil)
        } catch {
            throw AtollError(.invalidArgument, "cannot read the configuration file \(path): \(error)", cause: error)
        }
        let errors = AccessErrors()
        let reader = ConfigReader(
            providers: [
                InMemoryProvider(name: "flags", values: try values(flags, source: { "--\(flagName($0.key))" }, byKey: true)),
                InMemoryProvider(name: "environment", values: try values(environment, source: { $0.environment }, byKey: false)),
                fileProvider,
            ],
            accessReporter: errors)
        var resolved = ResolvedSettings(file: FileManager.default.fileExists(atPath: path) ? path : nil)
        for setting in all {
            let key = AbsoluteConfigKey(setting.key.split(separator: ".").map(String.init))
            let text: String?
            switch setting.kind {
            case .string: text = reader.string(forKey: ConfigKey(key.components))
            case .integer: text = reader.int(forKey: ConfigKey(key.components)).map(String.init)
            case .number: text = reader.double(forKey: ConfigKey(key.components)).map { String($0) }
            }
            if let text { resolved.values[setting.environment] = text }
        }
        if let failure = errors.first {
            throw AtollError(.invalidArgument, "configuration: \(failure) (in \(path), the environment or the flags; see docs/configuration.md)")
        }
        return resolved
    }

    /// The command-line flag of a setting key: `sweepInterval` → `sweep-interval`.
    static func flagName(_ key: String) -> String {
        var name = ""
        for character in key {
            if character.isUppercase {
                name += "-" + character.lowercased()
            } else if character == "." {
                name += "-"
            } else {
                name.append(character)
            }
        }
        return name
    }

    /// Typed values for an in-memory provider, from text given by environment variable (or by
    /// key, for flags); text that is not of the setting's type is an error naming where it was.
    static func values(_ given: [String: String], source: (Setting) -> String, byKey: Bool) throws -> [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for setting in all {
            guard let text = given[byKey ? setting.key : setting.environment] else { continue }
            let content: ConfigContent
            switch setting.kind {
            case .string: content = .string(text)
            case .integer:
                guard let value = Int(text) else {
                    throw AtollError(.invalidArgument, "\(source(setting))=\(text.prefix(32)) is not a valid number (a whole number)")
                }
                content = .int(value)
            case .number:
                guard let value = Double(text), value.isFinite else {
                    throw AtollError(.invalidArgument, "\(source(setting))=\(text.prefix(32)) is not a valid number")
                }
                content = .double(value)
            }
            values[AbsoluteConfigKey(setting.key.split(separator: ".").map(String.init))] = ConfigValue(content, isSecret: false)
        }
        return values
    }
}

/// Settings after layering: text by environment variable name.
public struct ResolvedSettings: Sendable {
    /// The configuration file that was read, if one exists.
    public var file: String?
    public var values: [String: String] = [:]

    public init(file: String? = nil, values: [String: String] = [:]) {
        self.file = file
        self.values = values
    }

    public subscript(environment name: String) -> String? { values[name] }
}

/// Collects what swift-configuration could not read (a file value of the wrong JSON type, say),
/// which its non-throwing getters would otherwise turn into the default without a word.
final class AccessErrors: AccessReporter, @unchecked Sendable {
    // @unchecked: `failures` is only touched under `lock`.
    private let lock = NSLock()
    private var failures: [String] = []

    func report(_ event: AccessEvent) {
        var message: String?
        if case .failure(let error) = event.result { message = "\(event.metadata.key): \(error)" }
        if let error = event.conversionError { message = "\(event.metadata.key): \(error)" }
        for result in event.providerResults {
            if case .failure(let error) = result.result { message = "\(event.metadata.key) in \(result.providerName): \(error)" }
        }
        if let message { lock.withLock { failures.append(message) } }
    }

    var first: String? { lock.withLock { failures.first } }
}
