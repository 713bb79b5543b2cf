import AtollCore

/// Which cgroup layout the host has, read from `/proc/self/mountinfo`.
public enum CgroupLayout: Sendable, Equatable {
    /// cgroup2 mounted at `root` with its controllers (production hosts).
    case unified(root: String)
    /// v1 hierarchies, controller name to mount point. On hybrid hosts a cgroup2 mount may exist
    /// beside them (with few or no controllers); the v1 hierarchies are what limits resources.
    case legacy(hierarchies: [String: String])

    /// Detects the layout: the unified hierarchy if cgroup2 is mounted at `/sys/fs/cgroup` itself,
    /// otherwise the v1 controller hierarchies.
    public static func detect(mounts: [MountEntry]) throws -> CgroupLayout {
        if let unified = mounts.first(where: { $0.fsType == "cgroup2" && $0.mountPoint == "/sys/fs/cgroup" }) {
            return .unified(root: unified.mountPoint)
        }
        var hierarchies: [String: String] = [:]
        for m in mounts where m.fsType == "cgroup" {
            for option in m.superOptions.split(separator: ",").map(String.init) where CgroupV1Manager.controllers.contains(option) {
                // The first mount of a hierarchy wins (bind mounts of sub-trees come later).
                if hierarchies[option] == nil && m.root == "/" { hierarchies[option] = m.mountPoint }
            }
        }
        if !hierarchies.isEmpty { return .legacy(hierarchies: hierarchies) }
        if let anyUnified = mounts.first(where: { $0.fsType == "cgroup2" }) {
            return .unified(root: anyUnified.mountPoint)
        }
        throw AtollError(.unavailable, "no cgroup hierarchy is mounted (checked /proc/self/mountinfo)")
    }

    /// The manager for this layout.
    public func manager(groupName: String, fileSystem: any CgroupFileSystem = HostCgroupFileSystem()) throws -> any CgroupManaging {
        switch self {
        case .unified(let root): return CgroupV2Manager(root: root, groupName: groupName, fileSystem: fileSystem)
        case .legacy(let hierarchies): return try CgroupV1Manager(hierarchies: hierarchies, groupName: groupName, fileSystem: fileSystem)
        }
    }

    /// Detects the host's layout and returns its manager.
    public static func hostManager(groupName: String) throws -> any CgroupManaging {
        try detect(mounts: MountInfo.current()).manager(groupName: groupName)
    }
}
