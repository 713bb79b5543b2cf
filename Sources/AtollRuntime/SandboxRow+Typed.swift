import AtollCore
import AtollLinux
import AtollSandbox
import AtollStore

/// The typed view of a sandbox record: each value the runner works with is read from and written
/// to its columns in one place, so PID 1, resources, intervals and the network policy are never
/// assembled from (or stamped onto) columns by hand.
extension SandboxRow {
    /// PID 1 while started: its pid and start time together identify it across pid reuse.
    var initProcess: InitProcess? {
        get {
            guard let initPid, let initStartTime else { return nil }
            return InitProcess(pid: initPid, startTime: UInt64(initStartTime))
        }
        set {
            initPid = newValue?.pid
            initStartTime = newValue.map { Int64($0.startTime) }
        }
    }

    var resources: Resources {
        get { Resources(cpu: cpu, memoryGiB: memoryGiB, diskGiB: diskGiB) }
        set { (cpu, memoryGiB, diskGiB) = (newValue.cpu, newValue.memoryGiB, newValue.diskGiB) }
    }

    var intervals: LifecycleIntervals {
        get { LifecycleIntervals(autoStop: autoStop, autoArchive: autoArchive, autoDelete: autoDelete) }
        set { (autoStop, autoArchive, autoDelete) = (newValue.autoStop, newValue.autoArchive, newValue.autoDelete) }
    }

    /// The egress policy; the allow list is stored in Daytona's comma-separated form.
    var networkPolicy: NetworkPolicy {
        get { NetworkPolicy(blockAll: networkBlockAll, allowListText: networkAllowList) }
        set { (networkBlockAll, networkAllowList) = (newValue.blockAll, newValue.allowListText) }
    }

    /// The host ids the sandbox's ids map to (`checked()` keeps them within UInt32).
    var ids: IDRange { IDRange(base: UInt32(uidBase), count: UInt32(uidCount)) }
}
