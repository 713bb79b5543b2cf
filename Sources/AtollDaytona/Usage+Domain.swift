import AtollCore
public import AtollRuntime
public import AtollWire
import Foundation

/// The wire form of a usage report, shared by atolld and the embedded CLI.
extension UsageResponse {
    public init(_ report: UsageReport) {
        let iso = SandboxDTO.iso
        func item(_ entry: UsageEntry, total: Bool) -> UsageItemDTO {
            var sandboxId: String?
            var label: String?
            if !total {
                switch report.groupBy {
                case .sandbox: sandboxId = entry.key
                case .label: label = entry.key
                }
            }
            return UsageItemDTO(
                sandboxId: sandboxId, label: label, sandboxIds: entry.sandboxIds, name: entry.name, labels: entry.labels, state: entry.state,
                vcpuSecondsAllocated: entry.vcpuSecondsAllocated, cpuSecondsUsed: entry.cpuSecondsUsed,
                memoryGiBSecondsAllocated: entry.memoryGiBSecondsAllocated, memoryBytesPeak: entry.memoryBytesPeak,
                diskGiBSecondsAllocated: entry.diskGiBSecondsAllocated, diskBytesUsed: entry.diskBytesUsed,
                archiveGiBSecondsAllocated: entry.archiveGiBSecondsAllocated, estimatedCost: entry.estimatedCost,
                periods: total
                    ? nil
                    : entry.periods.map { period in
                        UsagePeriodDTO(
                            sandboxId: period.sandboxId, kind: period.allocation.kind, cpu: period.allocation.cpu,
                            memoryGiB: period.allocation.memoryGiB, diskGiB: period.allocation.diskGiB,
                            archiveBytes: period.allocation.archiveBytes, startedAt: iso.string(from: period.startedAt),
                            endedAt: period.endedAt.map { iso.string(from: $0) }, endReason: period.endReason)
                    })
        }
        let prices = report.prices
        self.init(
            from: iso.string(from: report.from), to: iso.string(from: report.to), groupBy: report.groupBy.description,
            prices: PricesDTO(
                currency: prices.currency, vcpuSecond: prices.vcpuSecond, memoryGiBSecond: prices.memoryGiBSecond,
                diskGiBSecond: prices.diskGiBSecond, archiveGiBMonth: prices.archiveGiBMonth),
            items: report.items.map { item($0, total: false) }, total: item(report.total, total: true))
    }
}

extension WarmPoolDTO {
    public init(_ status: WarmPoolStatus) {
        self.init(
            snapshot: status.key.snapshot, cpu: status.key.resources.cpu, memory: status.key.resources.memoryGiB,
            disk: status.key.resources.diskGiB, user: status.key.user, size: status.size, ready: status.ready,
            creating: status.creating, claims: status.claims, misses: status.misses, lastError: status.lastError)
    }
}
