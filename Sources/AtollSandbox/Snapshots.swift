import AtollCore
import AtollLinux
import Foundation

/// A read-only base image sandboxes are created from.
public struct Snapshot: Sendable, Hashable {
    public var name: String
    /// The overlay's lower layers, top first: the snapshot's `rootfs`, or an image's unpacked layers.
    public var layers: [String]
    /// Interpreter paths inside the snapshot, by language (from `snapshot.json`).
    public var runtimes: [String: String]
    /// What the image's config says about running processes (none for the default snapshot).
    public var environment: [String: String]
    public var workingDirectory: String?
    public var user: String?

    /// The top layer (the only one of a directory snapshot).
    public var root: String { layers[0] }
}

/// Snapshots on disk, each a directory with `snapshot.json`: the shipped ones in `directory`
/// (`<name>/rootfs`, built by `rootfs/build`), and the registered ones in `registeredDirectory`
/// (`<id>/snapshot.json` naming the image layers it stacks, written when a snapshot becomes
/// active). A name is looked up among the registered first.
public struct SnapshotStore: Sendable {
    public let directory: String
    public let registeredDirectory: String

    public init(directory: String, registeredDirectory: String? = nil) {
        self.directory = directory
        self.registeredDirectory = registeredDirectory ?? directory
    }

    /// The name of the snapshot sandboxes use unless told otherwise.
    public static let defaultName = "default"

    struct Metadata: Codable {
        var runtimes: [String: String]?
        var layers: [String]?
        var env: [String: String]?
        var workingDir: String?
        var user: String?
    }

    /// Looks up `name`; the error says how to build the default snapshot.
    public func snapshot(named name: String) throws -> Snapshot {
        guard SandboxID.isValid(name) else {
            throw AtollError(.invalidArgument, "invalid snapshot name \"\(name.prefix(64))\"")
        }
        let registered = "\(registeredDirectory)/\(name)"
        let base = KernelFile.exists("\(registered)/snapshot.json") ? registered : "\(directory)/\(name)"
        var metadata = Metadata()
        if let data = FileManager.default.contents(atPath: "\(base)/snapshot.json") {
            do {
                metadata = try JSONDecoder().decode(Metadata.self, from: data)
            } catch {
                throw AtollError(.internal, "snapshot \"\(name)\": \(base)/snapshot.json is not valid: \(error)")
            }
        }
        if let layers = metadata.layers {
            guard !layers.isEmpty, layers.allSatisfy(KernelFile.isDirectory) else {
                throw AtollError(.notFound, "snapshot \"\(name)\" is incomplete: a layer listed in \(base)/snapshot.json is missing")
            }
            return Snapshot(
                name: name, layers: layers, runtimes: metadata.runtimes ?? [:], environment: metadata.env ?? [:],
                workingDirectory: metadata.workingDir, user: metadata.user)
        }
        let root = "\(base)/rootfs"
        guard KernelFile.isDirectory(root) else {
            let hint = name == Self.defaultName ? " (build it with scripts/setup or rootfs/build --output \(base))" : ""
            throw AtollError(.notFound, "snapshot \"\(name)\" not found: \(root) does not exist\(hint)")
        }
        return Snapshot(name: name, layers: [root], runtimes: metadata.runtimes ?? [:], environment: [:], workingDirectory: nil, user: nil)
    }

    /// Registers a snapshot made of image layers (top first), atomically: the directory appears
    /// complete or not at all.
    public func register(
        name: String, layers: [String], runtimes: [String: String], environment: [String: String], workingDirectory: String?, user: String?
    ) throws {
        guard SandboxID.isValid(name) else { throw AtollError(.invalidArgument, "invalid snapshot directory name \"\(name.prefix(64))\"") }
        let metadata = Metadata(runtimes: runtimes, layers: layers, env: environment, workingDir: workingDirectory, user: user)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let directory = registeredDirectory
        let staging = "\(directory)/.\(name).tmp-\(UUID().uuidString.lowercased())"
        do {
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try encoder.encode(metadata).write(to: URL(fileURLWithPath: "\(staging)/snapshot.json"), options: .atomic)
        } catch {
            throw AtollError(.system, "cannot write snapshot \(name) in \(directory): \(error.localizedDescription)")
        }
        try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        guard rename(staging, "\(directory)/\(name)") == 0 else { throw SystemError.last("rename", "\(directory)/\(name)") }
    }

    /// The image layers registered snapshots stack (what an image store must keep).
    public func layersInUse() -> Set<String> {
        var layers = Set<String>()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: registeredDirectory)) ?? [] where !name.hasPrefix(".") {
            guard let data = FileManager.default.contents(atPath: "\(registeredDirectory)/\(name)/snapshot.json"),
                let metadata = try? JSONDecoder().decode(Metadata.self, from: data)
            else { continue }
            layers.formUnion(metadata.layers ?? [])
        }
        return layers
    }

    /// Removes a registered snapshot's directory (never a directory snapshot with its own rootfs).
    public func unregister(name: String) throws {
        guard SandboxID.isValid(name), name != Self.defaultName else { return }
        let base = "\(registeredDirectory)/\(name)"
        guard !KernelFile.isDirectory("\(base)/rootfs") else { return }
        try? FileManager.default.removeItem(atPath: base)
    }
}
