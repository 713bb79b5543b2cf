import AtollCore
import AtollLinux
import AtollSandbox
import AtollStore
import Foundation
import Glibc

/// Admission control: before a sandbox gets more of the host (a create, a start, a resize, a
/// recover), what every sandbox holds is added up from the database and checked against the
/// host's capacity and the organization's quota (see `Admission.check`). The check and the
/// transition that takes the resources run on the runner actor without a suspension between
/// them, so two requests of this runner cannot both squeeze into the last room.
extension SandboxManager {
    /// States whose sandbox holds vCPUs and memory: running, or on the way to or from it.
    static let computeStates: Set<SandboxState> = [.creating, .starting, .started, .restoring, .resizing, .stopping]
    /// States whose sandbox has no disk on this host.
    static let disklessStates: Set<SandboxState> = [.destroyed, .archived, .buildFailed, .pendingBuild]

    /// Throws unless `request` fits. `hostHoldsIt`: the resources are held on the host already
    /// (a warm pool member changing hands), so only the organization's quota is checked.
    func admit(_ request: AdmissionRequest, organization: String, hostHoldsIt: Bool = false) throws {
        let capacity = hostHoldsIt ? .unlimited : configuration.capacity
        let quota = configuration.quota
        guard capacity != .unlimited || quota != .unlimited else { return }
        // What sandbox disks occupy counts only when a disk is asked for (one stat per disk).
        let measureDisks = capacity.diskOvercommit > 0 && request.diskGiB > 0
        var held = Holdings()
        var organizationHeld = Holdings()
        var diskBytes: UInt64 = 0
        for sandbox in try database.holdings() {
            let compute = Self.computeStates.contains(sandbox.state)
            let disk = !Self.disklessStates.contains(sandbox.state)
            if compute {
                held.cpu += sandbox.cpu
                held.memoryGiB += sandbox.memoryGiB
            }
            if disk {
                held.diskGiB += sandbox.diskGiB
                if measureDisks, let id = try? SandboxID(sandbox.id) { diskBytes += driver.diskBytes(id) }
            }
            guard sandbox.organizationId == organization else { continue }
            organizationHeld.sandboxes += 1
            if compute {
                organizationHeld.cpu += sandbox.cpu
                organizationHeld.memoryGiB += sandbox.memoryGiB
            }
            if disk { organizationHeld.diskGiB += sandbox.diskGiB }
        }
        try Admission.check(
            request, capacity: capacity, host: hostSize(sandboxDiskBytes: measureDisks ? diskBytes : 0), held: held,
            quota: quota, organization: organization, organizationHeld: organizationHeld)
    }

    /// The host's memory in GiB (MemTotal), read once: it does not change while Atoll runs.
    static let hostMemoryGiB: Double = {
        guard let text = try? KernelFile.read("/proc/meminfo"), let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
            let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1_048_576
    }()

    /// The host as admission control sees it: online CPUs, total memory, and the data
    /// directory's free space plus what sandbox disks occupy on it already.
    func hostSize(sandboxDiskBytes: UInt64) -> HostSize {
        var fs = statvfs()
        var free = 0.0
        if statvfs(configuration.dataDirectory, &fs) == 0 { free = Double(fs.f_bavail) * Double(fs.f_frsize) }
        return HostSize(
            cpus: ProcessInfo.processInfo.activeProcessorCount, memoryGiB: Self.hostMemoryGiB,
            diskGiB: (free + Double(sandboxDiskBytes)) / Double(1 << 30))
    }
}
