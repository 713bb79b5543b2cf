import AtollCore
import AtollLinux
import Foundation

/// A read-only base image sandboxes are created from.
public struct Snapshot: Sendable, Hashable {
    public var name: String
    /// The snapshot's root directory (the overlay's lower layer).
    public var root: String
    /// Interpreter paths inside the snapshot, by language (from `snapshot.json`).
    public var runtimes: [String: String]
}

/// Snapshots on disk: `<directory>/<name>/rootfs` plus `snapshot.json`, built by `rootfs/build`.
public struct SnapshotStore: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// The name of the snapshot sandboxes use unless told otherwise.
    public static let defaultName = "default"

    struct Metadata: Decodable {
        var runtimes: [String: String]?
    }

    /// Looks up `name`; the error says how to build the default snapshot.
    public func snapshot(named name: String) throws -> Snapshot {
        guard SandboxID.isValid(name) else {
            throw AtollError(.invalidArgument, "invalid snapshot name \"\(name.prefix(64))\"")
        }
        let root = "\(directory)/\(name)/rootfs"
        guard KernelFile.isDirectory(root) else {
            let hint = name == Self.defaultName ? " (build it with scripts/setup or rootfs/build --output \(directory)/\(name))" : ""
            throw AtollError(.notFound, "snapshot \"\(name)\" not found: \(root) does not exist\(hint)")
        }
        var runtimes: [String: String] = [:]
        if let data = FileManager.default.contents(atPath: "\(directory)/\(name)/snapshot.json"),
            let metadata = try? JSONDecoder().decode(Metadata.self, from: data)
        {
            runtimes = metadata.runtimes ?? [:]
        }
        return Snapshot(name: name, root: root, runtimes: runtimes)
    }
}
