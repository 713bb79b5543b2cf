import ArgumentParser
import AtollCore
import AtollRuntime
import AtollStore
import Foundation

/// `atoll keys`: API keys of the local data directory (root only; works with or without atolld).
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API keys. A key belongs to an organization and sees only its sandboxes.",
        subcommands: [CreateKey.self, ListKeys.self, RevokeKey.self]
    )

    struct CreateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a key and print it (only this once).")
        @OptionGroup var runtime: RuntimeOptions
        @Option(help: "Organization the key acts for.") var org: String = "default"
        @Option(help: "A note about what the key is for.") var name: String = ""
        @Flag(help: "An administrator's key: it also sees the host's warm pools and the daemon's own metrics.") var admin = false
        func run() async throws {
            try withDatabase(runtime) { db in
                let (key, row) = try db.createKey(organizationId: org, name: name, admin: admin, at: Date().timeIntervalSince1970)
                FileHandle.standardError.write(Data("atoll: created \(admin ? "an administrator's" : "a") key \(row.id) for organization \(org)\n".utf8))
                print(key)
            }
        }
    }

    struct ListKeys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List keys (ids only; keys are stored hashed).")
        @OptionGroup var runtime: RuntimeOptions
        func run() async throws {
            try withDatabase(runtime) { db in
                let iso = ISO8601DateFormatter()
                print("ID            ORGANIZATION  CREATED               STATUS   NAME")
                for key in try db.keys() {
                    let status = key.revokedAt == nil ? (key.admin ? "admin" : "active") : "revoked"
                    print(
                        "\(key.id.padding(toLength: 12, withPad: " ", startingAt: 0))  \(key.organizationId.padding(toLength: 12, withPad: " ", startingAt: 0))  \(iso.string(from: Date(timeIntervalSince1970: key.createdAt)))  \(status.padding(toLength: 7, withPad: " ", startingAt: 0))  \(key.name)"
                    )
                }
            }
        }
    }

    struct RevokeKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a key: requests with it are refused from now on.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "Key id (as `atoll keys list` shows it).") var id: String
        func run() async throws {
            try withDatabase(runtime) { db in
                try db.revokeKey(id: id, at: Date().timeIntervalSince1970)
                print("revoked \(id)")
            }
        }
    }
}

/// Runs `body` with the data directory's database, printing an `AtollError` and exiting 1.
func withDatabase(_ options: RuntimeOptions, _ body: (SandboxDatabase) throws -> Void) throws {
    do {
        try FileManager.default.createDirectory(atPath: options.dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        try body(try SandboxDatabase(path: "\(options.dataDir)/atoll.db"))
    } catch let error as AtollError {
        FileHandle.standardError.write(Data("atoll: \(error)\n".utf8))
        throw ExitCode(1)
    }
}
