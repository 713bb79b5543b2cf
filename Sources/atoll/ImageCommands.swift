import ArgumentParser
import AtollCore
import AtollImage
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollWire
import Foundation

/// Options of the image commands: they work on the host's image store directly (root).
struct ImageStoreOptions: ParsableArguments {
    @Option(help: "Atoll's data directory (default $ATOLL_DATA_DIR, else /var/lib/atoll).")
    var dataDir: String = RuntimeOptions.defaultDataDirectory

    @Option(help: ArgumentHelp("atolld's configuration file (registry mirrors and plain-HTTP registries).", valueName: "file"))
    var config: String?

    func configuration() async throws -> RuntimeConfiguration {
        guard geteuid() == 0 else { throw AtollError(.unavailable, "the image store is root's: run as root") }
        let settings = try await Settings.resolve(file: config)
        return try RuntimeConfiguration.fromEnvironment(dataDirectory: dataDir, settings.values)
    }

    func puller() async throws -> ImagePuller {
        let configuration = try await configuration()
        return ImagePuller(store: try ImageStore(directory: configuration.imagesDirectory), settings: configuration.registry)
    }
}

/// `atoll image pull|list|rm|import|login`
struct Image: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pull, list, remove and import images (the host's image store under DATA_DIR/images).",
        discussion: """
            Images come from any OCI-distribution registry (Docker Hub by default: python:3.12 is
            docker.io/library/python:3.12), through registry mirrors and plain-HTTP registries as
            atolld's settings name them (registry.mirrors, registry.insecure). Layers are unpacked
            once and shared between images. Snapshots (atoll snapshot create) are made from images.
            """,
        subcommands: [Pull.self, ListImages.self, Remove.self, Import.self, Login.self])

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pull an image, printing progress.")
        @OptionGroup var store: ImageStoreOptions
        @Argument(help: "Image reference, e.g. python:3.12-slim or 127.0.0.1:5000/tools:1.") var reference: String

        func run() async throws {
            try await reportingErrors {
                let puller = try await store.puller()
                let reference = try ImageReference(self.reference)
                let started = Date()
                let image = try await Blocking.run("atoll-pull") { try puller.pull(reference, refresh: true) { print($0) } }
                print(
                    "\(image.reference): \(image.layers.count) layers, \(image.size >> 20) MiB in \(String(format: "%.1f", Date().timeIntervalSince(started))) s, \(image.manifestDigest)"
                )
            }
        }
    }

    struct ListImages: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the images in the store.")
        @OptionGroup var store: ImageStoreOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reportingErrors {
                let images = try await store.puller().store.images()
                if json { return try Output.json(images) }
                Output.table(
                    ["REFERENCE", "LAYERS", "SIZE", "DIGEST"],
                    images.map { [$0.reference, "\($0.layers.count)", "\($0.size >> 20) MiB", String($0.manifestDigest.prefix(19))] })
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove an image (layers snapshots use are kept until those snapshots are deleted).")
        @OptionGroup var store: ImageStoreOptions
        @Argument var reference: String

        func run() async throws {
            try await reportingErrors {
                let puller = try await store.puller()
                let name = try ImageReference(reference).description
                guard try puller.store.remove(name) else { throw AtollError(.notFound, "image \(name) is not in the store") }
                // Layers registered snapshots stack stay until those snapshots are deleted.
                let configuration = try await store.configuration()
                let inUse = configuration.driver.snapshotStore.layersInUse()
                let freed = try puller.store.collectGarbage(keepingLayers: Set(inUse.map { "sha256:" + URL(fileURLWithPath: $0).lastPathComponent }))
                print("removed \(name) (\(freed >> 20) MiB of blobs freed)")
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a `docker save` archive or an OCI layout tarball (for hosts without a registry).")
        @OptionGroup var store: ImageStoreOptions
        @Argument(help: "The archive file.") var file: String
        @Option(help: "The reference to record it as (default: from the file name, under localhost/imported/).") var name: String?

        func run() async throws {
            try await reportingErrors {
                let puller = try await store.puller()
                let path = URL(fileURLWithPath: file).path
                let image = try await Blocking.run("atoll-import") { try puller.importArchive(path, as: name) { print($0) } }
                print("\(image.reference): \(image.layers.count) layers, \(image.size >> 20) MiB, \(image.manifestDigest)")
            }
        }
    }

    struct Login: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store credentials for a registry (checked against it first), read from standard input.")
        @OptionGroup var store: ImageStoreOptions
        @Argument(help: "Registry host[:port], e.g. docker.io or registry.example.com:5000.") var registry: String
        @Option(name: .shortAndLong, help: "User name.") var username: String
        @Flag(help: "Read the password from standard input (the only way: never on the command line).") var passwordStdin = false

        func run() async throws {
            try await reportingErrors {
                guard passwordStdin else { throw AtollError(.invalidArgument, "pass --password-stdin and the password on standard input") }
                let password = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                    .trimmingCharacters(in: .newlines)
                guard !password.isEmpty else { throw AtollError(.invalidArgument, "no password on standard input") }
                let puller = try await store.puller()
                try await Blocking.run("atoll-login") { try puller.login(registry: registry, username: username, password: password) }
                print("login succeeded: credentials for \(registry) stored in \(puller.authFile)")
            }
        }
    }
}

/// `atoll snapshot create|list|rm`
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Create, list and delete snapshots: named roots for sandboxes (atoll create --snapshot NAME).",
        subcommands: [Create.self, ListSnapshots.self, Remove.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a snapshot from an image, a Dockerfile or a sandbox's filesystem as it is now; waits and prints the log.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "Snapshot name (letters, digits, . _ - / : @).") var name: String
        @Option(help: "Image reference to make it from.") var image: String?
        @Option(help: "Dockerfile to build it from.") var dockerfile: String?
        @Option(help: "Sandbox whose filesystem it is made of (started or stopped; a started one is frozen meanwhile).") var sandbox: String?
        @Option(help: "vCPUs of sandboxes made from it (default 1).") var cpu: Int?
        @Option(help: "Memory in GiB (default 1).") var memory: Int?
        @Option(help: "Disk in GiB (default 3).") var disk: Int?

        func run() async throws {
            try await withBackend(runtime) { backend in
                guard [image, dockerfile, sandbox].compactMap({ $0 }).count == 1 else {
                    throw AtollError(.invalidArgument, "pass exactly one of --image, --dockerfile or --sandbox")
                }
                if let sandbox {
                    _ = try await backend.snapshotSandbox(sandbox, name: name)
                    let snapshot = try await backend.snapshot(name)
                    return print("snapshot \(snapshot.name) is \(snapshot.state) (\(snapshot.id)), taken from \(sandbox)")
                }
                var body = CreateSnapshotRequest(name: name, imageName: image, cpu: cpu, memory: memory, disk: disk)
                if let dockerfile {
                    guard let text = try? String(contentsOfFile: dockerfile, encoding: .utf8) else {
                        throw AtollError(.notFound, "cannot read the Dockerfile \(dockerfile)")
                    }
                    body.buildInfo = CreateSandboxRequest.BuildInfo(dockerfileContent: text, contextHashes: nil)
                }
                var snapshot = try await backend.createSnapshot(body)
                var printed = 0
                while ["pending", "pulling", "building"].contains(snapshot.state) {
                    try await Task.sleep(for: .milliseconds(300))
                    printed = try await backend.printSnapshotLog(snapshot.id, from: printed)
                    snapshot = try await backend.snapshot(snapshot.id)
                }
                _ = try await backend.printSnapshotLog(snapshot.id, from: printed)
                guard snapshot.state == "active" else {
                    throw AtollError(.invalidArgument, "snapshot \(snapshot.name) is \(snapshot.state): \(snapshot.errorReason ?? "no reason given")")
                }
                print("snapshot \(snapshot.name) is active (\(snapshot.id))")
            }
        }
    }

    struct ListSnapshots: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the registered snapshots.")
        @OptionGroup var runtime: RuntimeOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await withBackend(runtime) { backend in
                let items = try await backend.snapshots()
                if json { return try Output.json(items) }
                Output.table(
                    ["NAME", "STATE", "IMAGE", "SIZE", "CPU/MEM/DISK", "ID"],
                    items.map {
                        [
                            $0.name, $0.state, $0.imageName ?? "(Dockerfile)", $0.size.map { String(format: "%.2f GiB", $0) } ?? "-",
                            "\($0.cpu)/\($0.mem)/\($0.disk)", $0.id,
                        ]
                    })
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a snapshot no sandbox uses.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String

        func run() async throws {
            try await withBackend(runtime) { backend in
                try await backend.deleteSnapshot(name)
                print("deleted snapshot \(name)")
            }
        }
    }
}
