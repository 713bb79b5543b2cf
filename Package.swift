// swift-tools-version:6.0
import PackageDescription

/// Settings shared by every Swift target: Swift 6 strict concurrency (the tools version's default
/// language mode) plus explicit existentials.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    // A module sees only what it imports (no members leaking in through another file's import),
    // and an import is internal unless marked `public import`: skipping a layer fails to compile.
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Atoll",
    products: [
        .executable(name: "atoll", targets: ["atoll"]),
        .executable(name: "atolld", targets: ["atolld"]),
        .library(name: "AtollRuntime", targets: ["AtollRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.8.0"),
        // Reads atolld's configuration file (JSON) under the environment and the flags.
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // WebSockets on atolld's own port: the preview proxy's upgrades (and the PTY API).
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        // The benchmark's HTTP client.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // C shim: everything between clone and execve, plus libseccomp / libcap / loop / openat2,
        // rtnetlink (libmnl) and nftables (libnftables).
        .target(
            name: "CRuntime",
            path: "CRuntime",
            exclude: ["init", "agent"],
            sources: ["src"],
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Wno-unused-parameter"])],
            linkerSettings: [.linkedLibrary("seccomp"), .linkedLibrary("cap"), .linkedLibrary("nftables"), .linkedLibrary("mnl")]
        ),
        // Builds the sandbox's PID 1 (CRuntime/init) as a static binary and embeds it.
        .plugin(name: "EmbedInit", capability: .buildTool(), path: "Plugins/EmbedInit"),
        // Embeds the dashboard (Dashboard/) into the API module.
        .plugin(name: "EmbedDashboard", capability: .buildTool(), path: "Plugins/EmbedDashboard"),

        // Domain: pure Swift, no I/O.
        .target(name: "AtollCore", swiftSettings: swiftSettings),
        // Kernel mechanisms behind protocols: spawn/exec, cgroups, disks, mounts, seccomp.
        .target(
            name: "AtollLinux",
            dependencies: ["AtollCore", "CRuntime"],
            swiftSettings: swiftSettings,
            plugins: ["EmbedInit"]
        ),
        // The sandbox driver: the mechanisms of a sandbox's life (disk, start, stop, exec, archive),
        // without state of its own.
        .target(
            name: "AtollSandbox",
            dependencies: ["AtollCore", "AtollLinux", "AtollImage", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        // Images: the content-addressed store, layer unpacking (hostile tars, as host root, safely)
        // and pulls from OCI registries.
        .target(
            name: "AtollImage",
            dependencies: ["AtollCore", "AtollLinux", "CRuntime", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        // Persistence of the runner: SQLite through GRDB.
        .target(
            name: "AtollStore",
            dependencies: ["AtollCore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // The runner: Daytona's lifecycle state machine, persistence, sweeps, restart safety.
        .target(
            name: "AtollRuntime",
            dependencies: [
                "AtollCore", "AtollLinux", "AtollSandbox", "AtollStore", "AtollImage",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            // Crash-test failpoints exist in debug builds only (what `swift test` builds).
            swiftSettings: swiftSettings + [.define("ATOLL_FAILPOINTS", .when(configuration: .debug))]),
        // The JSON bodies atolld speaks (Daytona's wire format), shared by server and CLI.
        .target(name: "AtollWire", swiftSettings: swiftSettings),
        // The Daytona adapter: wire bodies <-> runner parameters and reports, in both directions,
        // used by atolld and by both CLI backends (the one place the two vocabularies meet).
        .target(name: "AtollDaytona", dependencies: ["AtollCore", "AtollRuntime", "AtollSandbox", "AtollWire"], swiftSettings: swiftSettings),
        // The HTTP API: Daytona-compatible /api and /toolbox routes over the runner.
        .target(
            name: "AtollAPI",
            dependencies: [
                "AtollDaytona", "AtollRuntime", "AtollSandbox", "AtollStore", "AtollCore", "AtollLinux", "AtollWire",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
                // The preview proxy's upstream side and its tokens.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings,
            plugins: ["EmbedDashboard"]
        ),
        // The daemon.
        .executableTarget(
            name: "atolld",
            dependencies: [
                "AtollAPI", "AtollRuntime", "AtollLinux", "AtollCore", "AtollStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The `atoll` command.
        .executableTarget(
            name: "atoll",
            dependencies: [
                "AtollDaytona", "AtollRuntime", "AtollSandbox", "AtollStore", "AtollWire", "AtollLinux", "CRuntime", "AtollImage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // Benchmarks: Atoll's figures side by side with peers, in one run.
        .executableTarget(
            name: "atoll-bench",
            dependencies: [
                "AtollLinux", "AtollCore", "CRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),

        // The cgroup backend protocol against the running kernel: on the host (v1 here) and as PID 1
        // of a cgroup v2 guest (scripts/cgroup-v2-vm).
        .executableTarget(
            name: "atoll-cgroup-conformance",
            dependencies: ["AtollLinux", "AtollCore"],
            swiftSettings: swiftSettings
        ),

        // Shared helpers of the test targets: privileged-test rules, throwaway runtimes.
        .target(
            name: "AtollTestSupport",
            dependencies: ["AtollRuntime", "AtollSandbox", "AtollStore", "AtollLinux", "AtollCore", "AtollImage"],
            path: "Tests/AtollTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "AtollCoreTests", dependencies: ["AtollCore"], swiftSettings: swiftSettings),
        .testTarget(name: "AtollLinuxTests", dependencies: ["AtollLinux", "AtollCore", "CRuntime", "AtollTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "AtollAPITests",
            dependencies: [
                "AtollAPI", "AtollWire", "AtollRuntime", "AtollCore", "AtollTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(name: "AtollImageTests", dependencies: ["AtollImage", "AtollCore", "AtollTestSupport", "CRuntime"], swiftSettings: swiftSettings),
        .testTarget(name: "AtollWireTests", dependencies: ["AtollWire"], swiftSettings: swiftSettings),
        .testTarget(name: "AtollStoreTests", dependencies: ["AtollStore"], swiftSettings: swiftSettings),
        .testTarget(name: "AtollSandboxTests", dependencies: ["AtollSandbox", "AtollLinux", "AtollCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "AtollDaytonaTests", dependencies: ["AtollDaytona", "AtollRuntime", "AtollWire", "AtollCore", "AtollTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "AtollRunnerTests", dependencies: ["AtollRuntime", "AtollSandbox", "AtollStore", "AtollLinux", "AtollCore", "AtollTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "AtollCLITests", dependencies: ["atoll", "AtollTestSupport", "AtollRuntime", "AtollSandbox", "AtollStore", "AtollLinux", "AtollCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "AtollRuntimeTests", dependencies: ["AtollRuntime", "AtollSandbox", "AtollStore", "AtollLinux", "AtollCore", "AtollTestSupport"],
            swiftSettings: swiftSettings),
    ]
)
