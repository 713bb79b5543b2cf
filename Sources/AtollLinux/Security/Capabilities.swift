import AtollCore
import CRuntime
import Foundation

/// A set of Linux capabilities as a bit mask (bit n = capability n).
public struct CapabilitySet: Sendable, Hashable {
    public var mask: UInt64

    public init(mask: UInt64) {
        self.mask = mask
    }

    /// Builds a set from names such as `CAP_CHOWN` (resolved by libcap).
    public init(names: [String]) throws {
        var mask: UInt64 = 0
        for name in names {
            let value = atoll_cap_from_name(name.lowercased())
            guard value >= 0, value < 64 else { throw AtollError(.invalidArgument, "unknown capability \(name)") }
            mask |= 1 << UInt64(value)
        }
        self.mask = mask
    }

    public func contains(_ capability: Int) -> Bool { mask & (1 << UInt64(capability)) != 0 }

    /// The capabilities root inside a sandbox keeps, all relative to the sandbox's own user
    /// namespace (none of them is worth anything on the host). This is Docker's default set minus
    /// NET_RAW (ping uses ICMP sockets instead, see `ping_group_range`), MKNOD (device nodes are
    /// useless in a user namespace) and SYS_CHROOT. Notably absent: SYS_ADMIN, SYS_PTRACE,
    /// SYS_MODULE, NET_ADMIN, SYS_TIME, SYS_BOOT, DAC_READ_SEARCH, BPF, PERFMON.
    public static let sandboxRootNames = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
    ]

    public static func sandboxRoot() throws -> CapabilitySet { try CapabilitySet(names: sandboxRootNames) }

    /// `cap_last_cap` of the running kernel.
    public static func lastCapability() -> UInt32 {
        guard let text = try? KernelFile.read("/proc/sys/kernel/cap_last_cap"),
            let value = UInt32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return 40 }
        return value
    }
}
