import ArgumentParser
import AtollAPI
import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import Foundation
import Glibc
import Logging
import ServiceLifecycle
import UnixSignals

/// `atolld`: the sandbox daemon. Serves the Daytona-compatible API and toolbox, runs the
/// automated lifecycle, and leaves sandboxes running when it stops.
@main
struct Atolld: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atolld",
        abstract: "Atoll's daemon: a Daytona-compatible API for local sandboxes.",
        discussion: """
            Point the Daytona SDK at it:
              DAYTONA_API_URL=http://127.0.0.1:3986/api DAYTONA_API_KEY=$(cat /var/lib/atoll/api-key) python3 app.py
            """,
        version: AtollVersion.current
    )

    @Option(
        help: ArgumentHelp(
            "The configuration file (JSON; also: $ATOLL_CONFIG). Default \(Settings.defaultFile) if it exists. The environment overrides it, flags override both.",
            valueName: "file"))
    var config: String?

    @Option(help: "Atoll's data directory (default \(RuntimeConfiguration.defaultDataDirectory); file key dataDir, $ATOLL_DATA_DIR).")
    var dataDir: String?

    @Option(help: "Address to listen on: HOST:PORT, [IPv6]:PORT or :PORT (default 127.0.0.1:3986, loopback only; file key listen, $ATOLLD_LISTEN).")
    var listen: String?

    @Option(
        help: ArgumentHelp(
            "A file holding an API key to accept for the default organization (also: $ATOLLD_API_KEY). Without either, a key is generated on the first start into DATA_DIR/api-key.",
            valueName: "file"))
    var apiKeyFile: String?

    /// Refused: a key on the command line is readable by every user of the host (`ps`).
    @Option(help: .hidden)
    var apiKey: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error (default info; file key logLevel, $ATOLLD_LOG_LEVEL).")
    var logLevel: String?

    @Option(
        help:
            "Seconds between passes of the automated lifecycle: auto-stop, -archive, -delete, deadlines (default 10; file key sweepInterval, $ATOLLD_SWEEP_INTERVAL)."
    )
    var sweepInterval: Double?

    func run() async throws {
        // Before anything else: no secret stays readable in /proc/<pid>/cmdline or environ.
        let environmentKey = SecretScrubbing.takeEnvironment("ATOLLD_API_KEY")
        if apiKey != nil { throw ValidationError(SecretScrubbing.refuseKeyArgument(environmentVariable: "ATOLLD_API_KEY").message) }
        var givenKey = environmentKey
        if let apiKeyFile {
            do {
                givenKey = try SecretScrubbing.readKey(file: apiKeyFile)
            } catch {
                throw ValidationError(error.message)
            }
        }
        // The configuration file, then the environment, then these flags.
        var flags: [String: String] = [:]
        flags["dataDir"] = dataDir
        flags["listen"] = listen
        flags["logLevel"] = logLevel
        flags["sweepInterval"] = sweepInterval.map { String($0) }
        let settings: ResolvedSettings
        do {
            settings = try await Settings.resolve(file: config, flags: flags)
        } catch let error as AtollError {
            throw ValidationError(error.message)
        }
        let logLevel = settings[environment: "ATOLLD_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level \(logLevel)") }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = { () -> Logger in
            var logger = Logger(label: "atolld")
            logger.logLevel = level
            return logger
        }()
        // A few descriptors per running sandbox: the soft limit (1024 under systemd) would run
        // out at a couple of hundred sandboxes; the hard limit is the operator's real ceiling.
        let files = Self.raiseDescriptorLimit()
        logger.info("descriptor limit", metadata: ["soft": "\(files.soft)", "hard": "\(files.hard)"])
        let (host, port) = try Self.parseListen(settings[environment: "ATOLLD_LISTEN"] ?? "127.0.0.1:3986")
        if let file = settings.file { logger.notice("configuration file", metadata: ["path": .string(file)]) }

        let dataDir = settings[environment: "ATOLL_DATA_DIR"] ?? RuntimeConfiguration.defaultDataDirectory
        var configuration = try RuntimeConfiguration.fromEnvironment(dataDirectory: dataDir, settings.values)
        if let text = settings[environment: "ATOLLD_SWEEP_INTERVAL"] {
            guard let seconds = Double(text), seconds > 0 else { throw ValidationError("sweepInterval must be a positive number of seconds, got \(text)") }
            configuration.sweepInterval = seconds
        }
        let manager: SandboxManager
        do {
            manager = try await SandboxManager.open(configuration: configuration, reconcile: false)
        } catch let error as AtollError {
            logger.critical("cannot open the runner", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        if let network = configuration.driver.network {
            logger.notice(
                "sandbox network",
                metadata: [
                    "bridge": .string(network.bridge), "subnet": .string("\(network.subnet.cidr)"),
                    "namespace": .string(network.namespacePath ?? "the daemon's own"),
                ])
        } else {
            logger.notice("sandbox network: none (ATOLL_NETWORK=none): sandboxes get loopback only")
        }
        let report = await manager.reconcile()
        for line in report.network { logger.notice("host network changed", metadata: ["what": .string(line)]) }
        for line in report.reconciled { logger.notice("reconciled", metadata: ["what": .string(line)]) }
        for line in report.deleted { logger.notice("deleted abandoned sandbox", metadata: ["id": .string(line)]) }
        for line in report.orphansRemoved { logger.notice("removed orphan", metadata: ["what": .string(line)]) }
        for line in report.failures { logger.error("reconcile failed", metadata: ["what": .string(line)]) }
        await manager.resumeImageWork()
        try setUpKeys(manager.database, dataDir: dataDir, givenKey: givenKey, logger: logger)
        // Ready sandboxes for creates that match a key (ATOLL_WARM_POOL; 0 turns it off).
        let pools = configuration.warmPool.entries.filter { $0.size > 0 }
        logger.notice(
            "warm pool",
            metadata: [
                "keys": .string(pools.isEmpty ? "off" : pools.map { "\($0.key)=\($0.size)" }.joined(separator: ","))
            ])

        let dataDirectory = configuration.dataDirectory
        let limits = try ConnectionLimits.fromEnvironment(settings.values)
        logger.notice(
            "connection limits",
            metadata: [
                "total": "\(limits.effectiveTotal(descriptorLimit: Int(clamping: files.soft)))", "perPeer": "\(limits.perPeer)",
                "idleSeconds": "\(limits.idleSeconds)", "stallSeconds": "\(limits.stallSeconds)",
            ])
        let previewDomain = settings[environment: "ATOLLD_PREVIEW_DOMAIN"] ?? ServerSettings.defaultPreviewDomain
        guard !previewDomain.isEmpty, previewDomain.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }) else {
            throw ValidationError("previewDomain must be a DNS name such as localhost or preview.example.com, got \(previewDomain)")
        }
        var previewAnswerTimeout = ServerSettings.defaultPreviewAnswerTimeout
        if let text = settings[environment: "ATOLLD_PREVIEW_ANSWER_TIMEOUT"] {
            guard let seconds = Int64(text), seconds > 0 else {
                throw ValidationError("previewAnswerTimeout must be a positive number of seconds, got \(text)")
            }
            previewAnswerTimeout = seconds
        }
        let app = try AtollServer.application(
            manager: manager, host: host, port: port, logger: logger, limits: limits,
            descriptorLimit: Int(clamping: files.soft), previewDomain: previewDomain, previewAnswerTimeout: previewAnswerTimeout
        ) { actualPort in
            let url = "http://\(host.contains(":") ? "[\(host)]" : host):\(actualPort)"
            Self.writeEndpoint(url: url, dataDirectory: dataDirectory)
            logger.notice("listening", metadata: ["url": .string(url), "api": .string("\(url)/api"), "pid": "\(getpid())"])
        }
        // One service group: the automated lifecycle, per-second metering (GET /api/usage,
        // /metrics), the warm pool and the HTTP server. SIGTERM and SIGINT shut them down in
        // reverse order — the server first, so no request starts on a runner that is stopping;
        // sandboxes keep running.
        let group = ServiceGroup(
            configuration: .init(
                services: [SweeperService(runner: manager), MeterService(runner: manager), WarmPoolService(runner: manager), app],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("server stopped", metadata: ["error": "\(error)"])
            await manager.close()
            throw ExitCode(1)
        }
        await manager.close()
        unlink("\(dataDirectory)/atolld.url")
        logger.notice("stopped; sandboxes keep running")
    }

    /// A key given with `--api-key-file` or `ATOLLD_API_KEY` is an administrator's key of the
    /// default organization. Otherwise, on the first start, such a key is generated, written to
    /// DATA_DIR/api-key (mode 0600) and printed once.
    func setUpKeys(_ database: SandboxDatabase, dataDir: String, givenKey: String?, logger: Logger) throws {
        let now = Date().timeIntervalSince1970
        if let givenKey {
            _ = try database.createKey(organizationId: "default", name: "given at start-up", key: givenKey, admin: true, at: now)
            return
        }
        guard try database.keys().isEmpty else { return }
        let (key, row) = try database.createKey(organizationId: "default", name: "generated on first start", admin: true, at: now)
        let path = "\(dataDir)/api-key"
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        _ = fchmod(fd, 0o600)
        let bytes = Array((key + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        FileHandle.standardOutput.write(Data("API key for organization \"default\" (also in \(path), mode 0600; shown once): \(key)\n".utf8))
        logger.notice("generated the first API key", metadata: ["id": .string(row.id), "file": .string(path)])
    }

    /// `DATA_DIR/atolld.url`: where local clients (the `atoll` CLI) find the daemon.
    static func writeEndpoint(url: String, dataDirectory: String) {
        try? (url + "\n").write(toFile: "\(dataDirectory)/atolld.url", atomically: true, encoding: .utf8)
    }

    static func parseListen(_ text: String) throws -> (String, Int) {
        var host = "127.0.0.1"
        var portText = text
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ValidationError("--listen: expected [IPv6]:PORT, got \(text)")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = String(text[text.index(close, offsetBy: 2)...])
        } else if let colon = text.lastIndex(of: ":") {
            if colon != text.startIndex { host = String(text[..<colon]) }
            portText = String(text[text.index(after: colon)...])
        }
        guard let port = Int(portText), (0...65535).contains(port) else { throw ValidationError("--listen: invalid port in \(text)") }
        return (host, port)
    }
}

extension Atolld {
    /// Raises RLIMIT_NOFILE's soft limit to the hard one; returns both as they are now.
    static func raiseDescriptorLimit() -> (soft: UInt64, hard: UInt64) {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return (0, 0) }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }
}
