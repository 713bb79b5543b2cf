import ArgumentParser
import AtollRuntime

/// `atoll gc`: reconciles the data directory and removes what nothing owns.
struct GC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Reconcile half-done transitions, remove orphans, and apply auto-stop, auto-archive and auto-delete once.",
        discussion: "Without a daemon, run it from cron to get the automated lifecycle."
    )

    @OptionGroup var runtime: RuntimeOptions

    func run() async throws {
        try await withRunner(runtime, reconcile: false) { manager in
            let report = await manager.reconcile()
            let sweep = await manager.sweep()
            for id in sweep.archived { try await manager.waitForBackgroundWork(id) }
            let lines =
                report.reconciled + (report.deleted + sweep.deleted).map { "deleted \($0)" }
                + report.orphansRemoved.map { "removed \($0)" } + sweep.stopped.map { "stopped \($0) (auto-stop)" }
                + sweep.archived.map { "archived \($0) (auto-archive)" } + sweep.timedOut.map { "\($0): transition timed out" }
                + (report.failures + sweep.failures).map { "failed: \($0)" }
            print(lines.isEmpty ? "nothing to do" : lines.joined(separator: "\n"))
        }
    }
}
