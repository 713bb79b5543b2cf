public import AtollCore
public import AtollLinux
import Glibc

// The host mechanisms the driver is built from, as protocols, so that the driver's ordering —
// what it sets up before spawning, what it tears down when a start fails, in which order stop and
// destroy release things — can be tested with recording fakes and no root. The real
// implementations are thin: each forwards to the AtollLinux mechanism of the same name.

/// Per-sandbox disk images and the block devices they are mounted through.
public protocol DiskImages: Sendable {
    /// Creates a sparse ext4 image holding `entries`.
    func create(at path: String, sizeBytes: UInt64, entries: [DiskImage.Entry], scratch: String) throws
    /// Binds the image to a block device; the handle keeps the binding until it is closed or the
    /// device is mounted (autoclear).
    func attach(_ image: String) throws -> (devicePath: String, handle: OwnedFD)
    /// Waits until no block device is bound to the image (the previous mount is gone).
    func waitDetached(image: String, timeout: Double) throws
    func grow(_ image: String, to sizeBytes: UInt64) throws
}

/// Loop devices and ext4 images (needs root).
public struct LoopDiskImages: DiskImages {
    public init() {}

    public func create(at path: String, sizeBytes: UInt64, entries: [DiskImage.Entry], scratch: String) throws {
        _ = try DiskImage.create(at: path, sizeBytes: sizeBytes, entries: entries, scratch: scratch)
    }

    public func attach(_ image: String) throws -> (devicePath: String, handle: OwnedFD) {
        let loop = try LoopAttachment.attach(image)
        return (loop.devicePath, loop.handle)
    }

    public func waitDetached(image: String, timeout: Double) throws { try LoopAttachment.waitDetached(image: image, timeout: timeout) }

    public func grow(_ image: String, to sizeBytes: UInt64) throws { try DiskImage(path: image).grow(to: sizeBytes) }
}

/// Makes the user namespace a sandbox's ids map into.
public protocol UserNamespaces: Sendable {
    func create(_ range: IDRange) throws -> OwnedFD
}

/// Real user namespaces with the range's uid and gid maps (needs root).
public struct KernelUserNamespaces: UserNamespaces {
    public init() {}
    public func create(_ range: IDRange) throws -> OwnedFD { try UserNamespace.create(range) }
}

/// The host side of sandbox networking (`SandboxNetworking` is the real one).
public protocol NetworkAttaching: Sendable {
    var settings: NetworkSettings { get }
    /// The sandbox's network namespace, linked and addressed, with its firewall entry.
    func attach(_ entry: FirewallEntry) throws -> OwnedFD
    func detach(slot: Int) throws
    func prepare(current: () throws -> [FirewallEntry]) throws -> [String]
    func update(current: () throws -> FirewallEntry?) throws
}

extension SandboxNetworking: NetworkAttaching {}

extension NetworkAttaching {
    /// The firewall's view of a sandbox, or nil when it has no address on this subnet.
    public func entry(_ id: SandboxID, _ network: MachineNetwork?) -> FirewallEntry? {
        guard let network, let slot = settings.subnet.slot(of: network.address) else { return nil }
        return FirewallEntry(id: id, slot: slot, address: network.address, policy: network.policy)
    }
}

/// Everything the driver does to the host, injected: the real set by default.
public struct HostMechanisms: Sendable {
    public var spawner: any Spawning
    public var cgroups: any CgroupManaging
    public var disks: any DiskImages
    public var userNamespaces: any UserNamespaces
    /// Nil when sandboxes get loopback only.
    public var network: (any NetworkAttaching)?
    /// The capabilities of a sandbox's root (PID 1 and root execs).
    public var rootCapabilities: CapabilitySet

    public init(
        spawner: any Spawning, cgroups: any CgroupManaging, disks: any DiskImages, userNamespaces: any UserNamespaces,
        network: (any NetworkAttaching)?, rootCapabilities: CapabilitySet
    ) {
        self.spawner = spawner
        self.cgroups = cgroups
        self.disks = disks
        self.userNamespaces = userNamespaces
        self.network = network
        self.rootCapabilities = rootCapabilities
    }

    /// The real mechanisms for `configuration` (needs root).
    public static func host(_ configuration: DriverConfiguration) throws -> HostMechanisms {
        HostMechanisms(
            spawner: try LinuxSpawner(), cgroups: try CgroupLayout.hostManager(groupName: configuration.cgroupName),
            disks: LoopDiskImages(), userNamespaces: KernelUserNamespaces(),
            network: try configuration.network.map { try SandboxNetworking(settings: $0, lockPath: configuration.networkLockPath) },
            rootCapabilities: try CapabilitySet.sandboxRoot())
    }
}
