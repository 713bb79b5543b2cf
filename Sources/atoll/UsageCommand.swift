import ArgumentParser
import AtollCore
import AtollWire
import Foundation

/// `atoll usage`
struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Allocated and measured usage per sandbox (or label), with the estimated cost.",
        discussion: """
            Allocation comes from the periods every state change opens and closes; measured CPU,
            memory and disk from the daemon's per-second meter (only while atolld runs).
              atoll usage --since 24h
              atoll usage --sandbox my-box --since 2026-11-29T00:00:00Z --json
              atoll usage --group-by label:team
            """)

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Only this sandbox (id or name; a deleted one by id).") var sandbox: String?
    @Option(help: "Window start: a duration back from now (90s, 15m, 2h, 7d) or an ISO 8601 time.") var since = "24h"
    @Option(help: "Window end: a duration back from now or an ISO 8601 time (default: now).") var until: String?
    @Option(help: "sandbox, or label:KEY to add up sandboxes by a label's value.") var groupBy = "sandbox"
    @Flag(help: "Print JSON (with every allocation period).") var json = false

    func run() async throws {
        let now = Date()
        let from = try Self.time(since, now: now, option: "--since")
        let to = try until.map { try Self.time($0, now: now, option: "--until") } ?? now
        try await withBackend(runtime) { backend in
            let report = try await backend.usage(sandboxId: sandbox, from: from, to: to, groupBy: groupBy)
            if json { try Output.json(report) } else { Self.table(report) }
        }
    }

    /// "15m" back from now, or an ISO 8601 time.
    static func time(_ text: String, now: Date, option: String) throws -> Date {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last.flatMap({ units[$0] }), let count = Double(text.dropLast()), count >= 0, count.isFinite {
            return now.addingTimeInterval(-count * unit)
        }
        if let date = UsageTime.iso8601(text) { return date }
        throw ValidationError("\(option) must be a duration such as 90s, 15m, 2h, 7d or an ISO 8601 time, got \"\(text)\"")
    }

    static func bytes(_ value: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(value)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(value) B" : String(format: "%.1f %@", v, units[i])
    }

    static func table(_ report: UsageResponse) {
        print("usage from \(report.from) to \(report.to), grouped by \(report.groupBy); prices in \(report.prices.currency)")
        let header = [
            report.groupBy == "sandbox" ? "SANDBOX" : report.groupBy.uppercased(), "NAME", "STATE", "vCPU·s", "CPU s USED",
            "MEM GiB·s", "MEM PEAK", "DISK GiB·s", "DISK USED", "ARCHIVE GiB·s", "COST",
        ]
        func row(_ item: UsageItemDTO, key: String) -> [String] {
            [
                key, item.name ?? "", item.state ?? "", String(format: "%.0f", item.vcpuSecondsAllocated), String(format: "%.1f", item.cpuSecondsUsed),
                String(format: "%.0f", item.memoryGiBSecondsAllocated), bytes(item.memoryBytesPeak), String(format: "%.0f", item.diskGiBSecondsAllocated),
                bytes(item.diskBytesUsed), String(format: "%.0f", item.archiveGiBSecondsAllocated), String(format: "%.6f", item.estimatedCost),
            ]
        }
        var rows = report.items.map { row($0, key: $0.sandboxId ?? ($0.label.map { $0.isEmpty ? "(unset)" : $0 } ?? "")) }
        rows.append(row(report.total, key: "total"))
        let widths = header.indices.map { i in max(header[i].count, rows.map { $0[i].count }.max() ?? 0) }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i < 3
                    ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - cell.count) + cell
            }.joined(separator: "  ")
        }
        print(line(header))
        for r in rows { print(line(r)) }
    }
}
