import AtollCore
import AtollImage
import AtollLinux
import AtollSandbox
import AtollStore
import Foundation

/// Where a Dockerfile's RUN steps run: a build sandbox with the isolation of every sandbox.
protocol BuildSteps: AnyObject, Sendable {
    /// Runs `command` on a root made of `layers` (top first) with the stage's config, then
    /// returns the diff id of the layer holding what it changed.
    func runBuildStep(
        _ command: [String], layers: [String], config: ImageConfiguration, resources: Resources, log: BuildLog
    ) async throws -> String
}

extension SandboxManager: BuildSteps {
    /// Build sandboxes belong to an organization of their own, so no user lists or touches them.
    static let buildOrganization = "atoll-build"

    /// After a restart (the daemon's, not a CLI's): build sandboxes and temporary roots a runner
    /// that stopped mid-build left behind are removed, and snapshots it was pulling or building
    /// are made again from the start.
    public func resumeImageWork() async {
        await removeLeftoverBuilds()
        snapshots.resumeInterrupted()
    }

    func removeLeftoverBuilds() async {
        for sandbox in (try? list(organizationId: Self.buildOrganization)) ?? [] {
            _ = try? await delete(sandbox.id.rawValue, organizationId: Self.buildOrganization)
        }
        let store = configuration.driver.snapshotStore
        for name in (try? FileManager.default.contentsOfDirectory(atPath: store.registeredDirectory)) ?? [] where name.hasPrefix("build-") {
            try? store.unregister(name: name)
        }
    }

    /// Daytona's `sandbox.create_snapshot(name)`: the sandbox's filesystem as it is now (its
    /// changes as a new layer over its snapshot's layers) becomes a snapshot of the organization,
    /// active at once, with the sandbox's environment, user and resources. A started sandbox's
    /// processes are frozen while its changes are read and thawed after; a stopped one stays
    /// stopped.
    public func createSnapshot(fromSandbox idOrName: String, name: String, organizationId: String? = nil) async throws -> Sandbox {
        try SnapshotCatalog.validateName(name)
        let current = try row(idOrName, organizationId: organizationId)
        let live: Bool
        switch current.sandboxState {
        case .started: live = true
        case .stopped: live = false
        default: throw AtollError(.conflict, "sandbox \(current.id) is \(current.state): it must be started or stopped to take a snapshot of it")
        }
        let machine = try Self.machine(current)
        let base = try driver.snapshot(of: machine)
        if live { try await driver.pause(machine) }
        let captured: (diffID: String, report: UnpackReport)
        do {
            captured = try await driver.captureLayer(machine, store: snapshots.images, live: live)
        } catch {
            if live { try? await driver.resume(machine) }
            throw error
        }
        if live { try await driver.resume(machine) }
        let env = StringMapColumn.decode(current.env)
        _ = try snapshots.registerCaptured(
            name: name, organizationId: current.organizationId,
            layers: [try snapshots.images.layerRoot(captured.diffID)] + base.layers,
            config: ImageConfiguration(
                env: env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }, workingDir: base.workingDirectory, user: current.user),
            resources: current.resources, runtimes: base.runtimes, source: current.id)
        return Sandbox(try row(current.id, organizationId: organizationId))
    }

    func runBuildStep(
        _ command: [String], layers: [String], config: ImageConfiguration, resources: Resources, log: BuildLog
    ) async throws -> String {
        let directories = configuration.driver.snapshotStore
        let root = "build-" + String(UUID().uuidString.lowercased().prefix(13))
        try directories.register(
            name: root, layers: try snapshots.onRuntimeBase(layers), runtimes: [:], environment: config.environment, workingDirectory: nil, user: config.user)
        defer { try? directories.unregister(name: root) }
        var parameters = CreateParameters(
            labels: ["atoll.build": "true"], env: config.environment, user: config.user ?? "root", resources: resources, snapshot: root,
            intervals: LifecycleIntervals(autoStop: 0, autoArchive: 0, autoDelete: -1), network: .open,
            organizationId: Self.buildOrganization)
        parameters.id = SandboxID.random()
        let sandbox = try await create(parameters)
        let id = sandbox.id.rawValue
        do {
            let lines = LineSplitter { log.write($0) }
            let result = try await exec(
                id, ExecRequest(command: .argv(command), cwd: config.workingDir, user: config.user ?? "root", timeout: 3600, mergeOutput: true),
                organizationId: Self.buildOrganization, onOutput: { _, bytes in lines.feed(bytes) })
            lines.flush()
            guard result.exitCode == 0, !result.timedOut else {
                let tail = String(decoding: result.stdout.suffix(2000), as: UTF8.self)
                let how = result.timedOut ? "timed out" : result.oomKilled ? "was killed: out of memory" : "exited with code \(result.exitCode)"
                throw AtollError(.invalidArgument, "\(how); last output:\n\(tail)")
            }
            _ = try await stop(id, force: true, organizationId: Self.buildOrganization)
            let machine = try Self.machine(try row(id, organizationId: Self.buildOrganization))
            let captured = try await driver.captureLayer(machine, store: snapshots.images, live: false)
            log.write("  layer \(captured.diffID.prefix(19)): \(captured.report.entries) entries, \(captured.report.bytes >> 10) KiB")
            _ = try await delete(id, organizationId: Self.buildOrganization)
            return captured.diffID
        } catch {
            _ = try? await delete(id, organizationId: Self.buildOrganization)
            throw error
        }
    }
}

/// Splits output chunks into lines for the build log.
final class LineSplitter: @unchecked Sendable {
    // @unchecked: chunks come from one reader at a time; the lock guards the pending bytes anyway.
    private let lock = NSLock()
    private var pending: [UInt8] = []
    private let emit: (String) -> Void

    init(_ emit: @escaping (String) -> Void) { self.emit = emit }

    func feed(_ bytes: [UInt8]) {
        lock.withLock {
            pending += bytes
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                emit(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
        }
    }

    func flush() {
        lock.withLock {
            if !pending.isEmpty { emit(String(decoding: pending, as: UTF8.self)) }
            pending.removeAll()
        }
    }
}
