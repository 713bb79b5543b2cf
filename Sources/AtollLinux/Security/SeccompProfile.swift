import AtollCore
import CRuntime
public import Glibc

/// The seccomp profile every sandbox process runs under. Modelled on the container default
/// profile (Docker/containerd), expressed as a deny list: everything is allowed except the groups
/// below, and every syscall made through a foreign ABI (i386 `int 0x80`, x32) kills the process,
/// because filters are written for the native syscall numbers only.
public struct SeccompProfile: Sendable {
    /// One denied group: the syscalls, the reason, and what the caller sees.
    public struct Group: Sendable {
        public var name: String
        public var reason: String
        public var rules: [Rule]
    }

    /// A syscall (optionally only with some argument bits) and its action.
    public struct Rule: Sendable {
        public var syscall: String
        /// errno returned; 0 kills the process.
        public var errno: Int32
        public var argument: (index: Int32, mask: UInt64, value: UInt64)?

        public init(_ syscall: String, errno: Int32 = EPERM, argument: (index: Int32, mask: UInt64, value: UInt64)? = nil) {
            self.syscall = syscall
            self.errno = errno
            self.argument = argument
        }
    }

    public var groups: [Group]

    public init(groups: [Group]) {
        self.groups = groups
    }

    static func deny(_ names: [String], errno: Int32 = EPERM) -> [Rule] { names.map { Rule($0, errno: errno) } }

    /// Namespace flags of clone(2): creating namespaces is refused inside a sandbox.
    static let namespaceFlags: [UInt64] = [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000]

    /// The default profile.
    public static let `default` = SeccompProfile(groups: [
        Group(
            name: "mounts",
            reason: "changing the mount tree could hide or expose paths; sandboxes never mount",
            rules: deny(["mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"])
        ),
        Group(
            name: "namespaces",
            reason: "a nested user namespace would hand out capabilities again and reopen the kernel surface the profile closes",
            rules: deny(["unshare", "setns"])
                + namespaceFlags.map { Rule("clone", argument: (index: 0, mask: $0, value: $0)) }
                // ENOSYS, not EPERM: libc then falls back to clone(2), whose flags can be checked.
                + [Rule("clone3", errno: ENOSYS)]
        ),
        Group(
            name: "kernel modules",
            reason: "loading code into the host kernel",
            rules: deny(["init_module", "finit_module", "delete_module"])
        ),
        Group(
            name: "kernel replacement and power",
            reason: "rebooting or replacing the host kernel",
            rules: deny(["kexec_load", "kexec_file_load", "reboot"])
        ),
        Group(
            name: "keyrings",
            reason: "kernel keyrings are not namespaced: keys would be shared with the host",
            rules: deny(["add_key", "request_key", "keyctl"])
        ),
        Group(
            name: "tracing other processes",
            reason: "reading or changing another process's memory or registers; also closes kcmp/pidfd_getfd fd theft",
            rules: deny(["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "perf_event_open"])
        ),
        Group(
            name: "bpf and userfaultfd",
            reason: "large kernel attack surface; userfaultfd makes kernel races reliably exploitable",
            rules: deny(["bpf", "userfaultfd"])
        ),
        Group(
            name: "io_uring",
            reason: "bypasses seccomp for the operations it performs and has a long record of kernel bugs",
            rules: deny(["io_uring_setup", "io_uring_enter", "io_uring_register"])
        ),
        Group(
            name: "host-wide settings",
            reason: "clock, swap, accounting and kernel log belong to the host",
            rules: deny(["settimeofday", "clock_settime", "clock_adjtime", "swapon", "swapoff", "acct", "syslog", "quotactl", "quotactl_fd"])
        ),
        Group(
            name: "legacy and raw hardware",
            reason: "file-handle opens bypass path checks (the 'shocker' escape); port I/O and obsolete calls are never needed",
            rules: deny(["open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "uselib", "lookup_dcookie", "fanotify_init"])
        ),
        Group(
            name: "terminal injection",
            reason: "TIOCSTI/TIOCLINUX push input into a terminal shared with the host",
            rules: [
                Rule("ioctl", argument: (index: 1, mask: 0xFFFF_FFFF, value: 0x5412)),  // TIOCSTI
                Rule("ioctl", argument: (index: 1, mask: 0xFFFF_FFFF, value: 0x541C)),  // TIOCLINUX
            ]
        ),
        Group(
            name: "host sockets",
            reason: "AF_VSOCK talks to the hypervisor of the host",
            rules: [Rule("socket", errno: EAFNOSUPPORT, argument: (index: 0, mask: 0xFFFF_FFFF, value: 40))]
        ),
    ])

    /// Every denied syscall name.
    public var deniedSyscalls: Set<String> { Set(groups.flatMap { $0.rules.map(\.syscall) }) }

    /// Compiles the profile with libseccomp into a BPF program.
    public func compile() throws -> SeccompProgram {
        let rules = groups.flatMap(\.rules)
        let names = rules.map { strdup($0.syscall) }
        defer { names.forEach { free($0) } }
        var cRules = [atoll_seccomp_rule]()
        for (i, rule) in rules.enumerated() {
            var r = atoll_seccomp_rule()
            r.name = UnsafePointer(names[i])
            r.errno_value = rule.errno
            r.arg_index = rule.argument?.index ?? -1
            r.mask = rule.argument?.mask ?? 0
            r.value = rule.argument?.value ?? 0
            cRules.append(r)
        }
        var program: UnsafeMutableRawPointer?
        var length: UInt32 = 0
        var failure = atoll_error()
        guard atoll_seccomp_build(cRules, UInt32(cRules.count), &program, &length, &failure) == 0, let program else {
            throw SystemError.error(failure)
        }
        defer { free(program) }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: program, count: Int(length) * 8))
        return SeccompProgram(bytes: bytes, instructionCount: length)
    }
}

/// A compiled seccomp filter (`struct sock_filter[]`), built once and handed to every child.
public struct SeccompProgram: Sendable {
    public let bytes: [UInt8]
    public let instructionCount: UInt32
}
