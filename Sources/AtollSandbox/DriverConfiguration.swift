public import AtollCore
import AtollLinux
import Foundation

/// Where the sandbox driver keeps things and how it names them on the host.
public struct DriverConfiguration: Sendable {
    /// Root of Atoll's state.
    public var dataDirectory: String
    /// Where snapshots live (`<name>/rootfs`, `<name>/snapshot.json`).
    public var snapshotsDirectory: String
    /// Top-level cgroup name under each hierarchy root.
    public var cgroupName: String
    /// Output kept per stream of an exec; the rest is dropped and the result marked truncated.
    public var captureLimitBytes: Int
    /// Sandbox networking; nil gives sandboxes a network namespace with loopback only.
    public var network: NetworkSettings?

    public init(
        dataDirectory: String, snapshotsDirectory: String? = nil, cgroupName: String = "atoll", captureLimitBytes: Int = 16 << 20,
        network: NetworkSettings? = .standard
    ) {
        self.dataDirectory = dataDirectory
        self.snapshotsDirectory = snapshotsDirectory ?? "\(dataDirectory)/snapshots"
        self.cgroupName = cgroupName
        self.captureLimitBytes = captureLimitBytes
        self.network = network
    }

    public var sandboxesDirectory: String { "\(dataDirectory)/sandboxes" }
    /// Snapshots registered at run time (from images and Dockerfiles): `<id>/snapshot.json`,
    /// kept with the data (the shipped snapshots' directory may be shared or read-only).
    public var registeredSnapshotsDirectory: String { "\(dataDirectory)/images/snapshots" }

    /// Both snapshot directories.
    public var snapshotStore: SnapshotStore {
        SnapshotStore(directory: snapshotsDirectory, registeredDirectory: registeredSnapshotsDirectory)
    }
    /// The local object store for archives.
    public var archiveDirectory: String { "\(dataDirectory)/archive" }

    public func sandboxDirectory(_ id: SandboxID) -> String { "\(sandboxesDirectory)/\(id)" }
    public func diskPath(_ id: SandboxID) -> String { "\(sandboxDirectory(id))/disk.img" }
    public func mountPoint(_ id: SandboxID) -> String { "\(sandboxDirectory(id))/mnt" }
    /// Serialises network changes across processes (see `SandboxNetworking`).
    public var networkLockPath: String { "\(dataDirectory)/network.lock" }
    public func archivePath(_ id: SandboxID) -> String { "\(archiveDirectory)/\(id).tar.zst" }
}
