import ArgumentParser
import AtollRuntime

/// `atoll gc`: reconciles the data directory and removes what nothing owns.
struct GC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Finish or undo half-done transitions, delete sandboxes of killed `atoll run`s, remove orphans."
    )

    @OptionGroup var runtime: RuntimeOptions

    func run() async throws {
        try await withRunner(runtime, reconcile: false) { manager in
            let report = await manager.reconcile()
            let lines = report.reconciled + report.deleted.map { "deleted \($0)" } + report.orphansRemoved.map { "removed \($0)" }
            print(lines.isEmpty ? "nothing to do" : lines.joined(separator: "\n"))
        }
    }
}
