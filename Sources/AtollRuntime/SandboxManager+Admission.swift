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
        let capacity = configuration.capacity
        let quota = configuration.quota
        guard capacity != .unlimited || quota != .unlimited else { return }
        var held = Holdings()
        var organizationHeld = Holdings()
        var diskBytes: UInt64 = 0
        for row in try database.all() {
            let state = row.sandboxState
            guard state != .destroyed else { continue }
            let compute = Self.computeStates.contains(state)
            let disk = !Self.disklessStates.contains(state)
            if compute {
                held.cpu += row.cpu
                held.memoryGiB += row.memoryGiB
            }
            if disk {
                held.diskGiB += row.diskGiB
                if capacity.diskOvercommit > 0, request.diskGiB > 0, let machine = try? Self.machine(row) { diskBytes += driver.diskBytes(machine) }
            }
            guard row.organizationId == organization else { continue }
            organizationHeld.sandboxes += 1
            if compute {
                organizationHeld.cpu += row.cpu
                organizationHeld.memoryGiB += row.memoryGiB
            }
            if disk { organizationHeld.diskGiB += row.diskGiB }
        }
        try Admission.check(request, capacity: hostHoldsIt ? .unlimited : capacity, host: hostSize(sandboxDiskBytes: diskBytes), held: held, quota: quota,
                            organization: organization, organizationHeld: organizationHeld)
    }

    /// The host as admission control sees it: online CPUs, total memory, and the data
    /// directory's free space plus what sandbox disks occupy on it already.
    func hostSize(sandboxDiskBytes: UInt64) -> HostSize {
        var memory = 0.0
        if let text = try? KernelFile.read("/proc/meminfo"), let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
           let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        {
            memory = kib / 1_048_576
        }
        var fs = statvfs()
        var free = 0.0
        if statvfs(configuration.dataDirectory, &fs) == 0 { free = Double(fs.f_bavail) * Double(fs.f_frsize) }
        return HostSize(cpus: ProcessInfo.processInfo.activeProcessorCount, memoryGiB: memory,
                        diskGiB: (free + Double(sandboxDiskBytes)) / Double(1 << 30))
    }
}
