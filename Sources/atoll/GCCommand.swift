import ArgumentParser
import AtollRuntime

/// `atoll gc`: removes sandboxes left behind by `atoll run` processes that were killed.
struct GC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove sandboxes whose `atoll run` process is gone (e.g. after kill -9)."
    )

    @Option(help: "Atoll's data directory.")
    var dataDir: String = RuntimeConfiguration.defaultDataDirectory

    func run() async throws {
        let runtime = try SandboxRuntime(configuration: .fromEnvironment(dataDirectory: dataDir))
        let removed = await runtime.reclaimAbandoned()
        print(removed.isEmpty ? "nothing to remove" : "removed \(removed.map(\.rawValue).joined(separator: " "))")
    }
}
