import ArgumentParser
import Foundation
import Glibc

/// `atoll-bench`: Atoll's figures side by side with peers doing the same work in the same run.
@main
struct AtollBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atoll-bench",
        abstract: "Measure Atoll against peers doing the same work, interleaved in one run (needs root).",
        subcommands: [Network.self]
    )

    struct Network: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A sandbox's network set-up and teardown: netlink + libnftables vs ip/nft processes.")
        @Option(help: "Samples per variant.") var iterations = 200

        func run() throws {
            guard geteuid() == 0 else { throw ValidationError("needs root (network namespaces)") }
            let results = try NetworkBenchmark(iterations: iterations).run()
            Measurement.printTable(results, iterations: iterations)
        }
    }
}

/// Samples of one figure, in milliseconds.
struct Measurement {
    var name: String
    var samples: [Double]

    func percentile(_ p: Double) -> Double {
        let sorted = samples.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
    }

    var median: Double { percentile(0.5) }
    var p95: Double { percentile(0.95) }

    /// A markdown table; ratios are to the first row of each group (set-up, teardown).
    static func printTable(_ results: [Measurement], iterations: Int) {
        print("\(Date()) · \(ProcessInfo.processInfo.activeProcessorCount) CPUs · Linux \(hostRelease()) · \(iterations) samples each, interleaved\n")
        print("| figure | median ms | p95 ms | × Atoll |")
        print("| --- | --- | --- | --- |")
        var base = 0.0
        for result in results {
            if result.name.hasSuffix("no process)") || result.name.hasSuffix(": Atoll") { base = result.median }
            let ratio = base > 0 && !result.name.contains("of which") ? String(format: "%.1f", result.median / base) : "-"
            print(String(format: "| %@ | %.2f | %.2f | %@ |", result.name, result.median, result.p95, ratio))
        }
    }
}

func hostRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}
