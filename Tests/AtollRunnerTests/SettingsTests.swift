import AtollCore
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Foundation
import Glibc
import Testing

@Suite("settings: configuration file, environment, flags, and the record of what must agree")
struct SettingsTests {
    func withFile<T>(_ json: String, _ body: (String) async throws -> T) async throws -> T {
        let path = "/tmp/atoll-settings-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        return try await body(path)
    }

    @Test("the file, then the environment, then flags: each overrides the one before; nested keys are JSON objects")
    func layering() async throws {
        try await withFile(#"{"cgroup":{"name":"from-file"},"pidsMax":300,"listen":"127.0.0.1:1","capacity":{"cpuOvercommit":2.5},"network":{"mode":"none"}}"#)
        { path in
            let resolved = try await Settings.resolve(
                file: path, environment: ["ATOLL_PIDS_MAX": "400", "ATOLLD_LISTEN": "127.0.0.1:2"], flags: ["listen": "127.0.0.1:3"])
            #expect(resolved.file == path)
            #expect(resolved[environment: "ATOLL_CGROUP_NAME"] == "from-file")
            #expect(resolved[environment: "ATOLL_PIDS_MAX"] == "400", "the environment overrides the file")
            #expect(resolved[environment: "ATOLLD_LISTEN"] == "127.0.0.1:3", "a flag overrides both")
            #expect(resolved[environment: "ATOLL_CPU_OVERCOMMIT"] == "2.5")
            let configuration = try RuntimeConfiguration.fromEnvironment(dataDirectory: "/tmp/unused", resolved.values)
            #expect(configuration.driver.cgroupName == "from-file")
            #expect(configuration.pidsMax == 400)
            #expect(configuration.capacity.cpuOvercommit == 2.5)
            #expect(configuration.driver.network == nil)
        }
    }

    @Test("a value of the wrong type is an error naming the key, never a silent default")
    func wrongType() async throws {
        try await withFile(#"{"pidsMax":"many"}"#) { path in
            await expectError(.invalidArgument, containing: "pidsMax") { try await Settings.resolve(file: path, environment: [:]) }
        }
        try await withFile("{}") { path in
            await expectError(.invalidArgument, containing: "ATOLL_PIDS_MAX=lots") {
                try await Settings.resolve(file: nil, environment: ["ATOLL_PIDS_MAX": "lots", "ATOLL_CONFIG": path])
            }
        }
    }

    @Test("a named file must exist; the default file may be missing")
    func missingFile() async throws {
        await expectError(.invalidArgument, containing: "/nonexistent/atoll.json") {
            try await Settings.resolve(file: "/nonexistent/atoll.json", environment: [:])
        }
        await expectError(.invalidArgument, containing: "/nonexistent/env.json") {
            try await Settings.resolve(file: nil, environment: ["ATOLL_CONFIG": "/nonexistent/env.json"])
        }
        try await withFile("{not json") { path in
            await expectError(.invalidArgument, containing: path) { try await Settings.resolve(file: path, environment: [:]) }
        }
    }

    @Test("the settings that must agree are recorded on first use; a runner with others refuses to open, naming each")
    func mustAgree() async throws {
        try await withRunner { f in
            let recorded = SettingsRecord.path(dataDirectory: f.configuration.dataDirectory)
            #expect(FileManager.default.fileExists(atPath: recorded))
            var other = f.configuration
            other.driver.cgroupName = "another"
            other.idRangeStart += 65536
            await expectError(.invalidArgument, containing: "cgroup.name (ATOLL_CGROUP_NAME): unused in the data directory, another now") {
                try await SandboxManager.open(configuration: other, driver: f.driver, clock: f.clock)
            }
            await expectError(.invalidArgument, containing: "ids.rangeStart") {
                try await SandboxManager.open(configuration: other, driver: f.driver, clock: f.clock)
            }
            // The same settings open again.
            let again = try await SandboxManager.open(configuration: f.configuration, driver: f.driver, clock: f.clock)
            await again.close()
        }
    }

    @Test("docs/configuration.md documents every key with its environment variable")
    func documented() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/configuration.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        for setting in Settings.all {
            #expect(text.contains("`\(setting.key)`") && text.contains("`\(setting.environment)`"), "\(setting.key) / \(setting.environment)")
        }
    }
}
