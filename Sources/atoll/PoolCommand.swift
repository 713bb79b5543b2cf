import ArgumentParser
import AtollCore
import AtollRuntime
import AtollWire
import Foundation

/// `atoll pool` and `atoll pool drain`
struct Pool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the warm pools: ready sandboxes per key, claims and misses.",
        discussion: """
            atolld keeps ATOLL_WARM_POOL sandboxes ready (default: 2 of the default key,
            default/1/1/3/sandbox); a create with the same snapshot, resources and user takes one.
            """,
        subcommands: [Status.self, Drain.self],
        defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the warm pools (the default).")
        @OptionGroup var runtime: RuntimeOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await withBackend(runtime) { backend in
                let pools = try await backend.warmPool()
                if json { return try Output.json(pools) }
                if pools.isEmpty { return print("no warm pool (ATOLL_WARM_POOL=0)") }
                let rows = pools.map { p in
                    [
                        "\(p.snapshot)/\(p.cpu)/\(p.memory)/\(p.disk)/\(p.user)", "\(p.ready)/\(p.size)", "\(p.creating)", "\(p.claims)",
                        "\(p.misses)", p.lastError ?? "",
                    ]
                }
                Output.table(["KEY", "READY", "CREATING", "CLAIMS", "MISSES", "LAST ERROR"], rows)
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete every pooled sandbox of the data directory (with the daemon stopped: a running one refills).")
        @OptionGroup var runtime: RuntimeOptions

        func run() async throws {
            try await withRunner(runtime) { manager in
                print("deleted \(try await manager.drainWarmPool()) pooled sandboxes")
            }
        }
    }
}
