import AtollLinux
import Foundation
import Glibc

/// PID 1 of the cgroup v2 test VM (scripts/cgroup-v2-vm): mounts what the checks need, with
/// cgroup2 as the only hierarchy, runs every check, prints the results on the console and powers
/// the machine off. The exit status travels in the summary line.
enum Guest {
    static func run() -> Int32 {
        guard getpid() == 1 else {
            print("guest mode runs only as PID 1 of a virtual machine (it mounts and powers off)")
            return 2
        }
        for (source, target, type) in [
            ("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs"),
            ("tmpfs", "/tmp", "tmpfs"), ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        ] {
            mkdir(target, 0o755)
            // cgroup2 as systemd mounts it: with nsdelegate (cgroup namespaces are delegation
            // boundaries), which CLONE_INTO_CGROUP's permission checks depend on.
            let options = type == "cgroup2" ? "nsdelegate" : ""
            if mount(source, target, type, 0, options.isEmpty ? nil : options) != 0 {
                print("FAIL setup: mount(\(type) on \(target)): \(String(cString: strerror(errno)))")
                powerOff()
            }
        }
        print("controllers: \((try? KernelFile.read("/sys/fs/cgroup/cgroup.controllers"))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?")")
        _ = runChecks([], groupName: "atoll-conformance")
        powerOff()
    }

    static func powerOff() -> Never {
        fflush(nil)
        sync()
        // SysRq "o" powers the machine off (root may always write the trigger). Should that fail,
        // PID 1 exiting panics the kernel, and with panic=-1 and -no-reboot qemu ends anyway.
        try? KernelFile.write("/proc/sysrq-trigger", "o")
        sleep(10)
        exit(1)
    }
}
