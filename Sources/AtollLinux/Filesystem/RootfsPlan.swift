import AtollCore
public import Glibc

/// One step of the root filesystem plan that a sandbox's first process carries out in its new
/// mount namespace (see `atoll_op` in the shim). Relative targets are inside the new root.
public enum PlanStep: Sendable, Equatable {
    case mount(source: String, target: String, fsType: String, flags: UInt, data: String?, optional: Bool = false)
    case bind(source: String, target: String, flags: UInt, optional: Bool = false)
    case readOnly(target: String, optional: Bool = true)
    case mask(target: String)
    case makeDirectory(target: String, mode: mode_t)
    case touch(target: String, mode: mode_t)
    case symlink(target: String, pointingTo: String)
    case write(target: String, data: String, optional: Bool = false)
    /// Attach an idmapped copy of `source` over `target`; `attributes` are MOUNT_ATTR_* bits.
    case idmapBind(source: String, target: String, attributes: UInt64)
    case changeDirectory(String)
    case pivotRoot
}

/// The mount flags the plan uses (from <sys/mount.h>, restated as plain integers for Swift).
public enum MountFlag {
    public static let readOnly: UInt = 1
    public static let noSuid: UInt = 2
    public static let noDev: UInt = 4
    public static let noExec: UInt = 8
    public static let noAtime: UInt = 1024
    /// MOUNT_ATTR_RDONLY / NOSUID / NODEV for idmapped binds.
    public static let attrReadOnly: UInt64 = 0x1
    public static let attrNoSuid: UInt64 = 0x2
    public static let attrNoDev: UInt64 = 0x4
}

/// Builds the root filesystem of a sandbox: its disk, the idmapped read-only snapshot, the
/// overlay, and then — relative to the new root — `/tmp` on the disk, a fresh `/proc`, a
/// read-only `/sys`, a minimal `/dev` of bind mounts, runc's masked and read-only paths, and
/// finally `pivot_root`.
public struct RootfsPlan: Sendable {
    /// `/dev/loopN` holding the sandbox's disk.
    public var diskDevice: String
    /// Host directory the disk is mounted on (only inside the sandbox's mount namespace).
    public var diskMountPoint: String
    /// The snapshot's layers, top first (read-only lower layers; the default snapshot has one).
    public var snapshotLayers: [String]
    /// The sandbox's host id range.
    public var ids: IDRange

    /// overlayfs stacks at most 500 lower layers; image stores keep to 128.
    public static let maximumLayers = 128

    public init(diskDevice: String, diskMountPoint: String, snapshotLayers: [String], ids: IDRange) {
        self.diskDevice = diskDevice
        self.diskMountPoint = diskMountPoint
        self.snapshotLayers = snapshotLayers
        self.ids = ids
    }

    public init(diskDevice: String, diskMountPoint: String, snapshotRoot: String, ids: IDRange) {
        self.init(diskDevice: diskDevice, diskMountPoint: diskMountPoint, snapshotLayers: [snapshotRoot], ids: ids)
    }

    /// Where layer `index` (0 = top) is attached on the disk: the first where the single layer of
    /// the default snapshot always was.
    static func lowerTarget(_ index: Int) -> String { index == 0 ? DiskLayout.lower : "\(DiskLayout.lower)\(index)" }

    /// runc's default masked paths: kernel data a sandbox has no business reading. Plus the host's
    /// virtual block devices: `/sys/devices/virtual/block/loop*/loop/backing_file` names every
    /// sandbox's disk image on the host (other tenants' ids included), and `/sys/block` and
    /// `/sys/class/block` only link there.
    public static let maskedPaths = [
        "proc/acpi", "proc/asound", "proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list",
        "proc/timer_stats", "proc/sched_debug", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap",
        "sys/devices/virtual/block", "sys/block", "sys/class/block",
    ]

    /// runc's default read-only paths.
    public static let readOnlyPaths = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"]

    /// Host devices bind-mounted into the sandbox's `/dev`.
    public static let devices = ["null", "zero", "full", "random", "urandom", "tty"]

    public func steps() throws -> [PlanStep] {
        guard !snapshotLayers.isEmpty, snapshotLayers.count <= Self.maximumLayers else {
            throw AtollError(.invalidArgument, "a snapshot has \(snapshotLayers.count) layers; 1 to \(Self.maximumLayers) can be mounted")
        }
        for path in [diskMountPoint] + snapshotLayers where path.contains(",") || path.contains(":") || path.contains("\\") {
            // overlayfs options are comma-separated and lowerdir is colon-separated.
            throw AtollError(.invalidArgument, "path \(path) contains ',', ':' or '\\', which overlayfs options cannot carry")
        }
        let nosuidNodev = MountFlag.noSuid | MountFlag.noDev
        let root = ids.base
        var steps: [PlanStep] = [
            .mount(source: diskDevice, target: diskMountPoint, fsType: "ext4", flags: nosuidNodev | MountFlag.noAtime, data: nil),
            // From here on, paths are relative to the disk: the overlay's options show in the
            // sandbox's /proc/self/mountinfo exactly as given, so they must not name host paths.
            .changeDirectory(diskMountPoint),
        ]
        for (index, layer) in snapshotLayers.enumerated() {
            steps += [
                .makeDirectory(target: Self.lowerTarget(index), mode: 0o755),
                // Shift the snapshot's ids (0..65535 on disk) into the sandbox's range, without copying.
                .idmapBind(
                    source: layer, target: Self.lowerTarget(index), attributes: MountFlag.attrReadOnly | MountFlag.attrNoSuid | MountFlag.attrNoDev),
            ]
        }
        let lowers = snapshotLayers.indices.map(Self.lowerTarget).joined(separator: ":")
        steps += [
            .mount(
                source: "overlay", target: DiskLayout.root, fsType: "overlay", flags: nosuidNodev,
                data: "lowerdir=\(lowers),upperdir=\(DiskLayout.upper),workdir=\(DiskLayout.work)"
            ),
            .changeDirectory(DiskLayout.root),
            .bind(source: "\(diskMountPoint)/\(DiskLayout.tmp)", target: "tmp", flags: nosuidNodev),
            .mount(source: "proc", target: "proc", fsType: "proc", flags: nosuidNodev | MountFlag.noExec, data: nil),
            .mount(source: "sysfs", target: "sys", fsType: "sysfs", flags: nosuidNodev | MountFlag.noExec | MountFlag.readOnly, data: nil),
            .mount(
                source: "tmpfs", target: "dev", fsType: "tmpfs", flags: MountFlag.noSuid | MountFlag.noExec, data: "mode=755,size=64k,uid=\(root),gid=\(root)"),
        ]
        for device in Self.devices {
            steps.append(.touch(target: "dev/\(device)", mode: 0o666))
            steps.append(.bind(source: "/dev/\(device)", target: "dev/\(device)", flags: MountFlag.noSuid | MountFlag.noExec))
        }
        steps += [
            .makeDirectory(target: "dev/pts", mode: 0o755),
            // gid 5 is "tty" inside; devpts interprets ids in the mounter's (host) namespace.
            .mount(
                source: "devpts", target: "dev/pts", fsType: "devpts", flags: MountFlag.noSuid | MountFlag.noExec,
                data: "newinstance,ptmxmode=0666,mode=0620,gid=\(try ids.host(5))"),
            .symlink(target: "dev/ptmx", pointingTo: "pts/ptmx"),
            .symlink(target: "dev/fd", pointingTo: "/proc/self/fd"),
            .symlink(target: "dev/stdin", pointingTo: "/proc/self/fd/0"),
            .symlink(target: "dev/stdout", pointingTo: "/proc/self/fd/1"),
            .symlink(target: "dev/stderr", pointingTo: "/proc/self/fd/2"),
            .makeDirectory(target: "dev/shm", mode: 0o1777),
            .mount(
                source: "shm", target: "dev/shm", fsType: "tmpfs", flags: nosuidNodev | MountFlag.noExec,
                data: "mode=1777,size=65536k,uid=\(root),gid=\(root)"),
            .makeDirectory(target: "dev/mqueue", mode: 0o755),
            .mount(source: "mqueue", target: "dev/mqueue", fsType: "mqueue", flags: nosuidNodev | MountFlag.noExec, data: nil),
            // The network namespace belongs to the host's user namespace, so root inside has no
            // CAP_NET_BIND_SERVICE or CAP_NET_RAW there: open low ports and ICMP sockets to the
            // sandbox's ids, as Docker does.
            .write(target: "proc/sys/net/ipv4/ip_unprivileged_port_start", data: "0"),
            .write(target: "proc/sys/net/ipv4/ping_group_range", data: "\(ids.base) \(ids.base + ids.count - 1)"),
        ]
        steps += Self.maskedPaths.map { .mask(target: $0) }
        steps += Self.readOnlyPaths.map { .readOnly(target: $0) }
        steps.append(.pivotRoot)
        return steps
    }
}

/// What a sandbox disk holds at its top level.
public enum DiskLayout {
    /// The overlay's upper directory: every change the sandbox makes to its root filesystem.
    public static let upper = "upper"
    /// overlayfs's work directory (same filesystem as upper).
    public static let work = "work"
    /// The sandbox's `/tmp`.
    public static let tmp = "tmp"
    /// Mount point of the merged root inside the sandbox's mount namespace.
    public static let root = "root"
    /// Where the idmapped snapshot is attached (inside the sandbox's mount namespace only).
    public static let lower = "lower"
}
