import ArgumentParser
import AtollCore

/// `atoll`: the command-line entry point.
@main
struct Atoll: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atoll",
        abstract: "Local Daytona-style sandboxes: isolated Linux environments that run code.",
        version: AtollVersion.current,
        subcommands: [
            Run.self, Create.self, List.self, Info.self, Start.self, Stop.self, Archive.self, Recover.self, Resize.self,
            Delete.self, Labels.self, Network.self, Usage.self, Pool.self, Exec.self, Logs.self, CodeRun.self, Upload.self, Download.self, Keys.self, GC.self,
            Image.self, SnapshotCommand.self,
        ]
    )
}
