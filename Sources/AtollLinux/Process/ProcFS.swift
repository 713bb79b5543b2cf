import AtollCore
import Foundation

/// Facts about host processes from procfs.
public enum ProcFS {
    /// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat). Together
    /// with the pid it identifies a process across pid reuse, which is how a restarted runtime
    /// recognises a sandbox's init.
    public static func startTime(_ pid: Int32) -> UInt64? {
        guard let stat = try? KernelFile.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // After the ")" closing comm: state is field 3, starttime field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// Whether `pid` names a running process that started at `startTime`.
    public static func isRunning(_ pid: Int32, startTime: UInt64) -> Bool {
        self.startTime(pid) == startTime
    }
}
