public import AtollCore
public import AtollImage
import AtollLinux
public import AtollSandbox
public import AtollStore
import Foundation
import Glibc
import Synchronization

/// Daytona's snapshot states, with their wire names.
public enum SnapshotState: String, Sendable, Codable, CaseIterable {
    case pending, pulling, building, active, inactive, error
    case buildFailed = "build_failed"
    case removing

    /// Still being made: a sandbox waits, a delete is refused.
    public var isInProgress: Bool { self == .pending || self == .pulling || self == .building }
}

/// What `SnapshotCatalog.create` is asked for.
public struct SnapshotRequest: Sendable {
    public var name: String
    /// An image reference (`python:3.12-slim`), or
    public var imageName: String?
    /// a Dockerfile to build.
    public var dockerfile: String?
    public var entrypoint: [String]?
    public var resources: Resources?
    public var organizationId: String?

    public init(
        name: String, imageName: String? = nil, dockerfile: String? = nil, entrypoint: [String]? = nil, resources: Resources? = nil,
        organizationId: String? = nil
    ) {
        self.name = name
        self.imageName = imageName
        self.dockerfile = dockerfile
        self.entrypoint = entrypoint
        self.resources = resources
        self.organizationId = organizationId
    }
}

/// Registered snapshots (Daytona's Snapshot API): named roots for sandboxes made from an image
/// pulled from a registry, or from a Dockerfile. Records live in the database; an active
/// snapshot also has a directory `<snapshots>/<id>/snapshot.json` naming the image layers it
/// stacks, which is all the driver reads. Pulls and builds run in the background, their log in
/// `<images>/logs/<id>.log`.
public final class SnapshotCatalog: Sendable {
    let database: SandboxDatabase
    public let images: ImageStore
    public let puller: ImagePuller
    let directories: SnapshotStore
    let organizationId: String
    let limits: ResourceLimits
    let logsDirectory: String
    private let running = Mutex<[String: Task<Void, Never>]>([:])
    /// Runs RUN steps (the runner, set once it exists; weak: the runner owns the catalog).
    private let steps = Mutex<WeakSteps>(WeakSteps())

    struct WeakSteps: @unchecked Sendable {
        weak var value: (any BuildSteps)?
    }

    func useBuildSteps(_ runner: any BuildSteps) { steps.withLock { $0.value = runner } }

    public init(configuration: RuntimeConfiguration, database: SandboxDatabase) throws {
        self.database = database
        images = try ImageStore(directory: configuration.imagesDirectory)
        puller = ImagePuller(store: images, settings: configuration.registry)
        directories = configuration.driver.snapshotStore
        organizationId = configuration.organizationId
        limits = configuration.limits
        logsDirectory = "\(configuration.imagesDirectory)/logs"
        try ImageStoreDirectories.make(logsDirectory)
    }

    // MARK: - Names

    /// Daytona's snapshot names: `my_awesome_snapshot`, `daytonaio/sandbox:0.5.0`.
    public static func validateName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@")
        guard !name.isEmpty, name.utf8.count <= 128, name.allSatisfy({ allowed.contains($0) }), !name.contains(".."),
            !name.hasPrefix("/"), !name.hasPrefix("-"), !name.hasPrefix(".")
        else {
            throw AtollError(
                .invalidArgument,
                "invalid snapshot name \"\(name.prefix(64))\": use 1-128 letters, digits and . _ - / : @ (no '..', not starting with / . or -)")
        }
    }

    // MARK: - API

    /// Registers a snapshot in `pending` and starts pulling or building it.
    public func create(_ request: SnapshotRequest) throws -> SnapshotRecord {
        try Self.validateName(request.name)
        let org = request.organizationId ?? organizationId
        if request.name == SnapshotStore.defaultName {
            throw AtollError(.conflict, "snapshot \"default\" already exists (the snapshot Atoll ships)")
        }
        guard (request.imageName == nil) != (request.dockerfile == nil) else {
            throw AtollError(.invalidArgument, "a snapshot needs exactly one of imageName or buildInfo.dockerfileContent")
        }
        if let image = request.imageName { _ = try ImageReference(image) }
        if let dockerfile = request.dockerfile { _ = try Dockerfile(parsing: dockerfile) }
        let resources = request.resources ?? .defaults
        try limits.validate(resources)
        let entrypoint = try request.entrypoint.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        let at = Date().timeIntervalSince1970
        let record = SnapshotRecord(
            id: UUID().uuidString.lowercased(), organizationId: org, name: request.name, state: SnapshotState.pending.rawValue,
            imageName: request.imageName, dockerfile: request.dockerfile, entrypoint: entrypoint, cpu: resources.cpu,
            memoryGiB: resources.memoryGiB, diskGiB: resources.diskGiB, createdAt: at, updatedAt: at)
        try database.insertSnapshot(record)
        start(record)
        return record
    }

    public func list(organizationId: String?, page: Int, limit: Int) throws -> (items: [SnapshotRecord], total: Int) {
        guard page >= 1, (1...200).contains(limit) else { throw AtollError(.invalidArgument, "page must be >= 1 and limit 1-200") }
        return try database.snapshots(organizationId: organizationId ?? self.organizationId, offset: (page - 1) * limit, limit: limit)
    }

    public func get(_ idOrName: String, organizationId: String?) throws -> SnapshotRecord {
        guard !idOrName.isEmpty, idOrName.utf8.count <= 256,
            let record = try database.snapshot(idOrName: idOrName, organizationId: organizationId ?? self.organizationId)
        else {
            throw AtollError(.notFound, "snapshot \(idOrName.prefix(64)) not found")
        }
        return record
    }

    /// By id, whatever the organization (for the runner's own bookkeeping).
    public func record(id: String) throws -> SnapshotRecord? { try database.snapshot(id: id) }

    /// Deletes a snapshot no sandbox uses (409 otherwise, or while it is being made).
    public func delete(_ idOrName: String, organizationId: String?) throws {
        let record = try get(idOrName, organizationId: organizationId)
        if let state = SnapshotState(rawValue: record.state), state.isInProgress {
            throw AtollError(.conflict, "snapshot \(record.name) is \(record.state); wait until it is made, then delete it")
        }
        try database.deleteSnapshot(id: record.id)
        try directories.unregister(name: record.id)
        try? FileManager.default.removeItem(atPath: logPath(record.id))
        try? collectGarbage()
    }

    /// Daytona's rule: a snapshot no sandbox was created from for this long goes `inactive`.
    public static let inactiveAfter: Double = 14 * 24 * 3600

    /// Active snapshots unused for `inactiveAfter` become `inactive` (their layers stay).
    func deactivateUnused(now: Double) {
        try? database.deactivateSnapshots(unusedBefore: now - Self.inactiveAfter, at: now)
    }

    /// Makes an inactive snapshot active again (Daytona's activate: 400 unless inactive).
    public func activate(_ idOrName: String, organizationId: String?) throws -> SnapshotRecord {
        let record = try get(idOrName, organizationId: organizationId)
        guard record.state == SnapshotState.inactive.rawValue else {
            throw AtollError(.invalidArgument, "snapshot \(record.name) is \(record.state); only an inactive snapshot can be activated")
        }
        return try database.updateSnapshot(id: record.id) { row in
            row.state = SnapshotState.active.rawValue
            row.lastUsedAt = Date().timeIntervalSince1970
            row.updatedAt = row.lastUsedAt ?? row.updatedAt
        } ?? record
    }

    /// The snapshot a sandbox create names, if the organization registered one by that name:
    /// its directory (the driver's snapshot name) and record. `nil` lets the caller fall back
    /// to the snapshot directories Atoll ships (`default`).
    public func resolve(_ name: String, organizationId: String?) throws -> (directory: String, record: SnapshotRecord, snapshot: Snapshot)? {
        guard let record = try database.snapshot(idOrName: name, organizationId: organizationId ?? self.organizationId) else { return nil }
        guard record.state == SnapshotState.active.rawValue else {
            let hint = record.state == SnapshotState.inactive.rawValue ? " (unused for 14 days: activate it)" : ""
            throw AtollError(
                .conflict,
                "snapshot \(record.name) is \(record.state)\(record.errorReason.map { ": \($0)" } ?? "")\(hint); a sandbox needs an active snapshot")
        }
        let snapshot = try directories.snapshot(named: record.id)
        try? database.updateSnapshot(id: record.id) { $0.lastUsedAt = Date().timeIntervalSince1970 }
        return (record.id, record, snapshot)
    }

    /// The snapshot built from `dockerfile` for the organization: an identical Dockerfile is
    /// built once (a hidden snapshot named after its hash) and then reused.
    public func snapshot(forDockerfile dockerfile: String, organizationId: String?) throws -> SnapshotRecord {
        let org = organizationId ?? self.organizationId
        let name = "atoll-build-" + String(Hex.string(Array(dockerfile.utf8).sha256Digest).prefix(24))
        if let existing = try database.snapshot(idOrName: name, organizationId: org) {
            if existing.state == SnapshotState.error.rawValue || existing.state == SnapshotState.buildFailed.rawValue {
                try database.deleteSnapshot(id: existing.id)
            } else {
                return existing
            }
        }
        do {
            return try create(SnapshotRequest(name: name, dockerfile: dockerfile, organizationId: org))
        } catch let error as AtollError where error.code == .conflict {
            // Two creates raced for the same Dockerfile: use the one that won.
            return try get(name, organizationId: org)
        }
    }

    /// Registers a snapshot made from a sandbox (`SandboxManager.createSnapshot`): active at once.
    func registerCaptured(
        name: String, organizationId: String, layers: [String], config: ImageConfiguration, resources: Resources,
        runtimes: [String: String], source: String
    ) throws -> SnapshotRecord {
        if name == SnapshotStore.defaultName { throw AtollError(.conflict, "snapshot \"default\" already exists (the snapshot Atoll ships)") }
        let at = Date().timeIntervalSince1970
        var record = SnapshotRecord(
            id: UUID().uuidString.lowercased(), organizationId: organizationId, name: name, state: SnapshotState.pending.rawValue,
            imageName: nil, dockerfile: nil, entrypoint: nil, cpu: resources.cpu, memoryGiB: resources.memoryGiB, diskGiB: resources.diskGiB,
            createdAt: at, updatedAt: at)
        try database.insertSnapshot(record)
        do {
            try directories.register(
                name: record.id, layers: try onRuntimeBase(layers), runtimes: runtimes, environment: config.environment, workingDirectory: config.workingDir,
                user: config.user)
        } catch {
            try? database.deleteSnapshot(id: record.id)
            throw error
        }
        let log = BuildLog(path: logPath(record.id))
        log.write("snapshot \(name) taken from sandbox \(source): \(layers.count) layers")
        log.close()
        let size = Int64(images.diskBytes(ofLayers: layers.map { "sha256:" + URL(fileURLWithPath: $0).lastPathComponent }))
        record =
            try database.updateSnapshot(id: record.id) { row in
                row.state = SnapshotState.active.rawValue
                row.size = size
            } ?? record
        return record
    }

    /// Waits until the snapshot is no longer being made; returns it as it ended.
    public func settled(_ id: String) async throws -> SnapshotRecord {
        while true {
            guard let record = try database.snapshot(id: id) else { throw AtollError(.notFound, "snapshot \(id) was deleted") }
            if let state = SnapshotState(rawValue: record.state), !state.isInProgress { return record }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Where a snapshot's pull or build log is written.
    public func logPath(_ id: String) -> String { "\(logsDirectory)/\(id).log" }

    /// Pending or in-progress snapshots left by a runner that stopped: made again from the start.
    public func resumeInterrupted() {
        guard let (items, _) = try? database.snapshots(organizationId: nil, offset: 0, limit: 10_000) else { return }
        for record in items where SnapshotState(rawValue: record.state)?.isInProgress == true {
            start(record)
        }
    }

    /// Removes image layers and blobs that no image record and no snapshot uses.
    public func collectGarbage() throws {
        let inUse = directories.layersInUse().map { "sha256:" + URL(fileURLWithPath: $0).lastPathComponent }
        try images.collectGarbage(keepingLayers: Set(inUse))
    }

    // MARK: - Making snapshots

    private func start(_ record: SnapshotRecord) {
        let task = Task.detached(priority: .background) { [self] in
            await make(record)
            _ = running.withLock { $0.removeValue(forKey: record.id) }
        }
        running.withLock { $0[record.id] = task }
    }

    private func make(_ record: SnapshotRecord) async {
        let log = BuildLog(path: logPath(record.id))
        do {
            let result: BuildResult
            if let image = record.imageName {
                _ = try update(record.id, to: .pulling, reason: nil)
                let reference = try ImageReference(image)
                let puller = self.puller
                let images = self.images
                let pulled = try await Blocking.run("atoll-pull") { () throws -> StoredImage in
                    do {
                        return try puller.pull(reference, refresh: true) { log.write($0) }
                    } catch let error as AtollError {
                        // An image imported (atoll image import) or pulled before serves a host
                        // that cannot reach its registry now.
                        guard let stored = images.image(reference.description) else { throw error }
                        log.write("using the stored copy of \(reference): \(error.message)")
                        return stored
                    }
                }
                var config = pulled.config
                if let entrypoint = record.entrypoint.flatMap({ try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }) {
                    config.entrypoint = entrypoint
                }
                result = BuildResult(layers: try pulled.layers.reversed().map { try images.layerRoot($0.diffID) }, config: config)
            } else {
                _ = try update(record.id, to: .building, reason: nil)
                let builder = ImageBuilder(
                    images: images, puller: puller, log: log, steps: steps.withLock { $0.value },
                    resources: Resources(cpu: record.cpu, memoryGiB: record.memoryGiB, diskGiB: record.diskGiB))
                result = try await builder.build(try Dockerfile(parsing: record.dockerfile ?? ""))
            }
            try register(record.id, result)
            let size = Int64(images.diskBytes(ofLayers: result.layers.map { "sha256:" + URL(fileURLWithPath: $0).lastPathComponent }))
            log.write("snapshot \(record.name) is active (\(result.layers.count) layers, \(size >> 20) MiB)")
            _ = try database.updateSnapshot(id: record.id) { row in
                row.state = SnapshotState.active.rawValue
                row.errorReason = nil
                row.size = size
                row.updatedAt = Date().timeIntervalSince1970
            }
        } catch {
            let message = (error as? AtollError)?.message ?? "\(error)"
            log.write("error: \(message)")
            _ = try? update(record.id, to: record.imageName != nil ? .error : .buildFailed, reason: message)
        }
        log.close()
    }

    /// `layers` (top first) with the runtime's base layer under them (see
    /// `ImageStore.runtimeBaseLayer`), once.
    func onRuntimeBase(_ layers: [String]) throws -> [String] {
        let base = try images.runtimeBaseLayer()
        return layers.last == base ? layers : layers + [base]
    }

    /// Writes the snapshot's directory: its layers (top first) and what the image config says.
    func register(_ id: String, _ result: BuildResult) throws {
        try directories.register(
            name: id, layers: try onRuntimeBase(result.layers), runtimes: Self.runtimes(layers: result.layers, config: result.config),
            environment: result.config.environment, workingDirectory: result.config.workingDir, user: result.config.user)
    }

    /// Interpreters found on the image's PATH (top layer first), by language.
    static func runtimes(layers: [String], config: ImageConfiguration) -> [String: String] {
        let path = config.environment["PATH"] ?? ExecDefaults.path
        var found: [String: String] = [:]
        for (language, program) in [("python", "python3"), ("javascript", "node"), ("typescript", "esbuild")] {
            search: for directory in path.split(separator: ":") where directory.hasPrefix("/") {
                for layer in layers where KernelFile.exists("\(layer)\(directory)/\(program)") {
                    found[language] = "\(directory)/\(program)"
                    break search
                }
            }
        }
        return found
    }

    @discardableResult
    func update(_ id: String, to state: SnapshotState, reason: String?) throws -> SnapshotRecord? {
        try database.updateSnapshot(id: id) { row in
            row.state = state.rawValue
            row.errorReason = reason
            row.updatedAt = Date().timeIntervalSince1970
        }
    }
}

/// What a pull or build makes: layers (top first) and the config processes run with.
struct BuildResult {
    var layers: [String]
    var config: ImageConfiguration
}

/// A snapshot's log: lines appended as they come (the build-logs URL follows the file).
final class BuildLog: @unchecked Sendable {
    // @unchecked: the descriptor is written under the lock only.
    private let lock = NSLock()
    private var fd: Int32

    init(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
    }

    func write(_ line: String) {
        lock.withLock {
            guard fd >= 0 else { return }
            let bytes = Array((line + "\n").utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    func close() {
        lock.withLock {
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
        }
    }

    deinit { close() }
}

enum ImageStoreDirectories {
    static func make(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError.last("mkdir", path) }
    }
}

extension Array where Element == UInt8 {
    var sha256Digest: [UInt8] { ImageDigest.sha256(self) }
}
