import AtollCore
import CRuntime
import Glibc
import Testing

@testable import AtollLinux

@Suite("isolation profile: seccomp, capabilities, root filesystem plan")
struct SecurityProfileTests {
    @Test("the seccomp profile compiles, and every group says why it exists")
    func seccomp() throws {
        let profile = SeccompProfile.default
        let program = try profile.compile()
        #expect(program.instructionCount > 20)
        #expect(program.bytes.count == Int(program.instructionCount) * 8)
        for group in profile.groups {
            #expect(!group.reason.isEmpty && !group.rules.isEmpty, "\(group.name)")
        }
        for required in [
            "mount", "ptrace", "init_module", "finit_module", "keyctl", "add_key", "bpf", "kexec_load", "unshare", "setns", "clone3", "open_by_handle_at",
            "io_uring_setup",
        ] {
            #expect(profile.deniedSyscalls.contains(required), "\(required) must be denied")
        }
        for allowed in ["execve", "clone", "read", "write", "openat", "socket", "ioctl"] {
            #expect(
                profile.groups.flatMap(\.rules).filter { $0.syscall == allowed }.allSatisfy { $0.argument != nil },
                "\(allowed) may only be restricted by argument, never denied outright")
        }
    }

    @Test("an unknown syscall name in a profile is an error naming it")
    func unknownSyscall() {
        let profile = SeccompProfile(groups: [.init(name: "x", reason: "y", rules: [.init("no_such_syscall")])])
        #expect(throws: AtollError(.system, "seccomp_syscall_resolve_name(no_such_syscall): Function not implemented (ENOSYS)")) {
            try profile.compile()
        }
    }

    @Test("capability names resolve through libcap; the sandbox set is small")
    func capabilities() throws {
        let set = try CapabilitySet.sandboxRoot()
        #expect(set.contains(0))  // CAP_CHOWN
        #expect(set.contains(10))  // CAP_NET_BIND_SERVICE
        #expect(!set.contains(21))  // CAP_SYS_ADMIN
        #expect(!set.contains(19))  // CAP_SYS_PTRACE
        #expect(!set.contains(16))  // CAP_SYS_MODULE
        #expect(!set.contains(12))  // CAP_NET_ADMIN
        #expect(!set.contains(13))  // CAP_NET_RAW
        #expect(set.mask.nonzeroBitCount == CapabilitySet.sandboxRootNames.count)
        #expect(try CapabilitySet(names: ["chown", "CAP_KILL"]).mask == (1 << 0) | (1 << 5))
        #expect(throws: AtollError.self) { try CapabilitySet(names: ["CAP_MADE_UP"]) }
    }

    func plan() throws -> [PlanStep] {
        try RootfsPlan(
            diskDevice: "/dev/loop7", diskMountPoint: "/data/sb/mnt", snapshotRoot: "/snap/rootfs",
            ids: IDRange(base: 1 << 28, count: 65536)
        ).steps()
    }

    @Test("the plan mounts the disk, the idmapped snapshot and the overlay, then works relative to the new root")
    func planOrder() throws {
        let steps = try plan()
        #expect(steps[0] == .mount(source: "/dev/loop7", target: "/data/sb/mnt", fsType: "ext4", flags: 2 | 4 | 1024, data: nil))
        #expect(steps[1] == .changeDirectory("/data/sb/mnt"))
        #expect(steps[2] == .makeDirectory(target: "lower", mode: 0o755))
        #expect(steps[3] == .idmapBind(source: "/snap/rootfs", target: "lower", attributes: 0x7))
        #expect(
            steps[4]
                == .mount(
                    source: "overlay", target: "root", fsType: "overlay", flags: 2 | 4,
                    data: "lowerdir=lower,upperdir=upper,workdir=work"))
        #expect(steps[5] == .changeDirectory("root"))
        #expect(steps.last == .pivotRoot)
        // After the first chdir every target is relative: nothing outside the disk and then the
        // new root is touched, and no host path reaches the overlay's options (which the sandbox
        // reads in /proc/self/mountinfo).
        for step in steps.dropFirst(2) {
            switch step {
            case .mount(_, let target, _, _, let data, _):
                #expect(!target.hasPrefix("/"), "\(step)")
                #expect(!(data ?? "").contains("/data") && !(data ?? "").contains("/snap"), "\(step)")
            case .bind(_, let target, _, _), .readOnly(let target, _), .mask(let target), .makeDirectory(let target, _),
                .touch(let target, _), .symlink(let target, _), .write(let target, _, _), .idmapBind(_, let target, _),
                .changeDirectory(let target):
                #expect(!target.hasPrefix("/"), "\(step)")
            case .pivotRoot: break
            }
        }
    }

    @Test("the plan masks runc's masked paths, makes its read-only paths read-only and builds a minimal /dev")
    func planContents() throws {
        let steps = try plan()
        for path in RootfsPlan.maskedPaths { #expect(steps.contains(.mask(target: path))) }
        for path in RootfsPlan.readOnlyPaths { #expect(steps.contains(.readOnly(target: path))) }
        for device in RootfsPlan.devices {
            #expect(steps.contains(.bind(source: "/dev/\(device)", target: "dev/\(device)", flags: 2 | 8)))
        }
        #expect(steps.contains(.mount(source: "proc", target: "proc", fsType: "proc", flags: 2 | 4 | 8, data: nil)))
        #expect(steps.contains(.mount(source: "sysfs", target: "sys", fsType: "sysfs", flags: 1 | 2 | 4 | 8, data: nil)))
        #expect(steps.contains(.write(target: "proc/sys/net/ipv4/ping_group_range", data: "\(1 << 28) \((1 << 28) + 65535)")))
        // Sysctls are written before /proc/sys becomes read-only.
        let write = steps.firstIndex(of: .write(target: "proc/sys/net/ipv4/ip_unprivileged_port_start", data: "0"))!
        #expect(write < steps.firstIndex(of: .readOnly(target: "proc/sys"))!)
    }

    @Test("paths that overlayfs options cannot carry are refused")
    func planRejectsSeparators() {
        #expect(throws: AtollError.self) {
            try RootfsPlan(diskDevice: "/dev/loop0", diskMountPoint: "/data,x/mnt", snapshotRoot: "/s", ids: IDRange(base: 1, count: 1)).steps()
        }
    }

    @Test("identities cross the shim boundary with the compiled filter and the capability masks")
    func shimIdentity() throws {
        let spawner = try LinuxSpawner()
        let arena = CArena()
        let caps = try CapabilitySet.sandboxRoot()
        let user = ProcessIdentity.user(uid: 1000, gid: 1000, groups: [1000, 27], rootCapabilities: caps)
        let id = spawner.cIdentity(user, userNamespace: 9, arena: arena)
        #expect(id.userns_fd == 9 && id.uid == 1000 && id.gid == 1000 && id.ngroups == 2)
        #expect(id.groups![0] == 1000 && id.groups![1] == 27)
        #expect(id.capabilities == 0, "a non-root user keeps no capabilities")
        #expect(id.bounding == caps.mask)
        #expect(id.seccomp_len == spawner.seccomp.instructionCount && id.seccomp != nil)
        #expect(id.rlimit_core == 0)
        #expect(id.last_cap == CapabilitySet.lastCapability())
        let root = spawner.cIdentity(.root(capabilities: caps), userNamespace: -1, arena: arena)
        #expect(root.capabilities == caps.mask && root.uid == 0 && root.userns_fd == -1)
    }

    @Test("plan steps cross the shim boundary as the C ops the child executes")
    func shimOperations() throws {
        let arena = CArena()
        let ops = LinuxSpawner.cOperations(
            [
                .mount(source: "proc", target: "proc", fsType: "proc", flags: 14, data: nil),
                .bind(source: "/dev/null", target: "dev/null", flags: 10, optional: true),
                .mask(target: "proc/kcore"),
                .idmapBind(source: "/s", target: "/s", attributes: 7),
                .pivotRoot,
            ], arena: arena)
        #expect(ops.map(\.kind) == [ATOLL_OP_MOUNT, ATOLL_OP_BIND, ATOLL_OP_MASK, ATOLL_OP_IDMAP_BIND, ATOLL_OP_PIVOT].map { Int32($0.rawValue) })
        #expect(String(cString: ops[0].fstype) == "proc" && ops[0].data == nil && ops[0].flags == 14)
        #expect(String(cString: ops[1].source) == "/dev/null" && ops[1].optional == 1)
        #expect(ops[2].optional == 1, "masked paths that do not exist on this kernel are skipped")
        #expect(ops[3].flags == 7)
        #expect(ops[4].target == nil)
    }
}
