import AtollCore
import CRuntime
import Glibc

/// The credentials a sandbox process runs with, as ids inside the sandbox's user namespace.
public struct ProcessIdentity: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    /// Permitted, effective and inheritable capabilities (empty for non-root users).
    public var capabilities: CapabilitySet
    /// The bounding set: the most any later exec can regain.
    public var bounding: CapabilitySet

    public init(uid: UInt32, gid: UInt32, groups: [UInt32], capabilities: CapabilitySet, bounding: CapabilitySet) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.capabilities = capabilities
        self.bounding = bounding
    }

    /// Root inside the sandbox with the sandbox capability set.
    public static func root(capabilities: CapabilitySet) -> ProcessIdentity {
        ProcessIdentity(uid: 0, gid: 0, groups: [], capabilities: capabilities, bounding: capabilities)
    }

    /// A user inside the sandbox: root keeps the sandbox set, anyone else has no capabilities.
    public static func user(uid: UInt32, gid: UInt32, groups: [UInt32], rootCapabilities: CapabilitySet) -> ProcessIdentity {
        ProcessIdentity(uid: uid, gid: gid, groups: groups, capabilities: uid == 0 ? rootCapabilities : CapabilitySet(mask: 0), bounding: rootCapabilities)
    }
}

/// A sandbox's PID 1 as seen from the host.
public struct SandboxInit: Sendable {
    public let pid: Int32
    /// Keeps the identity of the process: signals and namespace joins go through it, immune to
    /// pid reuse.
    public let pidfd: OwnedFD

    public init(pid: Int32, pidfd: OwnedFD) {
        self.pid = pid
        self.pidfd = pidfd
    }
}

/// Everything needed to start a sandbox's PID 1.
public struct SpawnSpec {
    public var plan: [PlanStep]
    /// The sandbox's user namespace (also used to idmap the snapshot).
    public var userNamespace: OwnedFD
    public var hostname: String
    public var cgroup: CgroupPlacement
    public var identity: ProcessIdentity
    /// A prepared network namespace to join; nil makes a new one with loopback only.
    public var network: OwnedFD?
    /// The listening socket PID 1 accepts the runtime's requests on (see `AgentConnection`); nil
    /// starts a sandbox without an agent.
    public var agentListener: OwnedFD?

    public init(
        plan: [PlanStep], userNamespace: OwnedFD, hostname: String, cgroup: CgroupPlacement, identity: ProcessIdentity,
        network: OwnedFD? = nil, agentListener: OwnedFD? = nil
    ) {
        self.plan = plan
        self.userNamespace = userNamespace
        self.hostname = hostname
        self.cgroup = cgroup
        self.identity = identity
        self.network = network
        self.agentListener = agentListener
    }
}

/// Starts sandboxes. The Linux implementation is the C shim; tests of the layers above substitute
/// a recording fake. Processes inside a running sandbox are started by its agent (see
/// `AgentConnection`), never by the runtime itself.
public protocol Spawning: Sendable {
    func spawn(_ spec: SpawnSpec) throws -> SandboxInit
}

/// The real spawner: translates specs into the shim's C structs and calls it.
public final class LinuxSpawner: Spawning {
    public let seccomp: SeccompProgram
    let initBinary: OwnedFD
    let agentBinary: OwnedFD
    let lastCapability: UInt32

    public init(profile: SeccompProfile = .default) throws {
        self.seccomp = try profile.compile()
        self.initBinary = try InitBinary.memfd()
        self.agentBinary = try AgentBinary.memfd()
        self.lastCapability = CapabilitySet.lastCapability()
    }

    func cIdentity(_ identity: ProcessIdentity, userNamespace: Int32, arena: CArena) -> atoll_identity {
        var id = atoll_identity()
        id.userns_fd = userNamespace
        id.uid = identity.uid
        id.gid = identity.gid
        id.groups = arena.array(identity.groups)
        id.ngroups = UInt32(identity.groups.count)
        id.bounding = identity.bounding.mask
        id.capabilities = identity.capabilities.mask
        id.last_cap = lastCapability
        id.seccomp = UnsafeRawPointer(arena.array(seccomp.bytes))
        id.seccomp_len = seccomp.instructionCount
        id.rlimit_core = 0  // no core dumps: a piped core_pattern would run a host helper on sandbox data
        return id
    }

    func cCgroup(_ placement: CgroupPlacement, arena: CArena) -> atoll_cgroup_target {
        var target = atoll_cgroup_target()
        target.dir_fd = placement.directory?.raw ?? -1
        target.procs_fds = arena.array(placement.procsFiles.map(\.raw))
        target.nprocs_fds = UInt32(placement.procsFiles.count)
        return target
    }

    static func cOperations(_ plan: [PlanStep], arena: CArena) -> [atoll_op] {
        plan.map { step in
            var op = atoll_op()
            switch step {
            case .mount(let source, let target, let fsType, let flags, let data, let optional):
                op.kind = Int32(ATOLL_OP_MOUNT.rawValue)
                op.source = arena.string(source)
                op.target = arena.string(target)
                op.fstype = arena.string(fsType)
                op.data = arena.optionalString(data)
                op.flags = flags
                op.optional = optional ? 1 : 0
            case .bind(let source, let target, let flags, let optional):
                op.kind = Int32(ATOLL_OP_BIND.rawValue)
                op.source = arena.string(source)
                op.target = arena.string(target)
                op.flags = flags
                op.optional = optional ? 1 : 0
            case .readOnly(let target, let optional):
                op.kind = Int32(ATOLL_OP_READONLY.rawValue)
                op.target = arena.string(target)
                op.flags = MountFlag.noSuid | MountFlag.noDev | MountFlag.noExec
                op.optional = optional ? 1 : 0
            case .mask(let target):
                op.kind = Int32(ATOLL_OP_MASK.rawValue)
                op.target = arena.string(target)
                op.optional = 1
            case .makeDirectory(let target, let mode):
                op.kind = Int32(ATOLL_OP_MKDIR.rawValue)
                op.target = arena.string(target)
                op.mode = UInt32(mode)
            case .touch(let target, let mode):
                op.kind = Int32(ATOLL_OP_TOUCH.rawValue)
                op.target = arena.string(target)
                op.mode = UInt32(mode)
            case .symlink(let target, let pointingTo):
                op.kind = Int32(ATOLL_OP_SYMLINK.rawValue)
                op.source = arena.string(pointingTo)
                op.target = arena.string(target)
            case .write(let target, let data, let optional):
                op.kind = Int32(ATOLL_OP_WRITE.rawValue)
                op.target = arena.string(target)
                op.data = arena.string(data)
                op.optional = optional ? 1 : 0
            case .idmapBind(let source, let target, let attributes):
                op.kind = Int32(ATOLL_OP_IDMAP_BIND.rawValue)
                op.source = arena.string(source)
                op.target = arena.string(target)
                op.flags = UInt(attributes)
            case .changeDirectory(let target):
                op.kind = Int32(ATOLL_OP_CHDIR.rawValue)
                op.target = arena.string(target)
            case .pivotRoot:
                op.kind = Int32(ATOLL_OP_PIVOT.rawValue)
            }
            return op
        }
    }

    public func spawn(_ spec: SpawnSpec) throws -> SandboxInit {
        let arena = CArena()
        let ops = Self.cOperations(spec.plan, arena: arena)
        var config = atoll_spawn_config()
        config.ops = arena.array(ops)
        config.nops = UInt32(ops.count)
        config.idmap_userns_fd = spec.userNamespace.raw
        config.hostname = arena.string(spec.hostname)
        config.loopback_up = 1
        config.netns_fd = spec.network?.raw ?? -1
        config.cgroup = cCgroup(spec.cgroup, arena: arena)
        config.exec_fd = initBinary.raw
        config.agent_listener_fd = spec.agentListener?.raw ?? -1
        config.agent_exec_fd = agentBinary.raw
        config.argv = arena.stringArray(["atoll-init"])
        config.envp = arena.stringArray([])
        config.identity = cIdentity(spec.identity, userNamespace: spec.userNamespace.raw, arena: arena)
        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var failure = atoll_error()
        let rc = withExtendedLifetime((arena, spec.cgroup, spec.userNamespace, spec.network, spec.agentListener)) {
            atoll_spawn_sandbox(&config, &pid, &pidfd, &failure)
        }
        guard rc == 0 else { throw SystemError.error(failure) }
        return SandboxInit(pid: pid, pidfd: OwnedFD(pidfd))
    }
}

/// Defaults for processes started in a sandbox.
public enum ExecDefaults {
    /// Debian's default PATH for a login shell, sbin included (as runc sets it).
    public static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

/// Creates the user namespace a sandbox runs in: ids 0..<count map to `range` on the host.
public enum UserNamespace {
    public static func create(_ range: IDRange) throws -> OwnedFD {
        var fd: Int32 = -1
        var failure = atoll_error()
        guard atoll_userns_create(range.base, range.base, range.count, &fd, &failure) == 0 else {
            throw SystemError.error(failure)
        }
        return OwnedFD(fd)
    }
}
