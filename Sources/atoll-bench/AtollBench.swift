import ArgumentParser
import Foundation
import Glibc

/// `atoll-bench`: Atoll's figures side by side with peers doing the same work in the same run.
@main
struct AtollBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atoll-bench",
        abstract: "Measure Atoll against peers doing the same work, interleaved in one run (needs root).",
        subcommands: [Network.self, API.self]
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

extension AtollBench {
    /// Run by `scripts/bench`, which installs the peers, builds a busybox root and starts atolld.
    struct API: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "api",
            abstract: "atolld through its HTTP API against runc, crun, bwrap, unshare and python3, interleaved; writes BENCHMARKS.md.")
        @Option(help: "atolld's base URL (http://127.0.0.1:PORT).") var url: String
        @Option(help: "A file holding the API key.") var apiKeyFile: String
        @Option(help: "atolld's pid (its RSS is reported).") var daemonPid: Int32
        @Option(help: "A busybox root directory for the peers.") var rootfs: String
        @Option(help: "A scratch directory for OCI bundles.") var scratch: String
        @Option(help: "Rounds: each runs every figure once.") var rounds = 100
        @Option(help: "Idle started sandboxes (and crun containers) for the density figure.") var density = 200
        @Option(help: "Seconds of back-to-back exec requests for the daemon's memory under load.") var loadSeconds = 60.0
        @Option(help: "Where to write the markdown report.") var out = "BENCHMARKS.md"

        func run() throws {
            guard geteuid() == 0 else { throw ValidationError("needs root") }
            Reaper.become()
            let key = try String(contentsOfFile: apiKeyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let benchmark = ApiBenchmark(
                http: try BenchHTTP(url: url, key: key), daemonPid: daemonPid, rootfs: rootfs, scratch: scratch,
                rounds: rounds, density: density, loadSeconds: loadSeconds)
            let report = try benchmark.run { line in
                FileHandle.standardError.write(Data("==> \(line)\n".utf8))
            }
            var text = report.markdown(rounds: rounds, density: density, loadSeconds: loadSeconds)
            print(text)
            // Sections other benchmarks keep in the same report (scripts/bench-pty's,
            // scripts/bench-images') stay.
            if let previous = try? String(contentsOfFile: out, encoding: .utf8), let start = previous.range(of: "<!-- bench-") {
                text += "\n" + previous[start.lowerBound...]
            }
            try text.write(toFile: out, atomically: true, encoding: .utf8)
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
