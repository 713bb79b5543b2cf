public import AtollCore
public import AtollLinux
public import AtollRuntime
public import AtollSandbox
import Foundation
import Glibc
public import Testing

/// Facts about where the tests run, and the rule for privileged tests: outside CI a missing
/// privilege skips them with a printed reason; with `CI=true` they always run, so a missing
/// privilege fails them instead of hiding them.
public enum TestEnvironment {
    public static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"
    public static let isRoot = geteuid() == 0

    /// Where the tests look for the default snapshot (`ATOLL_SNAPSHOTS`, else the host default).
    public static let snapshotsDirectory = ProcessInfo.processInfo.environment["ATOLL_SNAPSHOTS"] ?? "/var/lib/atoll/snapshots"

    public static var hasSnapshot: Bool { KernelFile.isDirectory("\(snapshotsDirectory)/default/rootfs") }

    /// Whether privileged tests run: always in CI, otherwise only as root. Decided (and the
    /// reason printed) once per test run.
    public static let runPrivileged: Bool = {
        if isCI { return true }
        if !isRoot { print("note: skipping privileged tests: they need root (run scripts/test as root)") }
        return isRoot
    }()

    /// Whether tests that need the default snapshot run: always in CI, otherwise only if it exists.
    public static let runWithSnapshot: Bool = {
        guard runPrivileged else { return false }
        if isCI { return true }
        if !hasSnapshot { print("note: skipping sandbox tests: no snapshot at \(snapshotsDirectory)/default (run scripts/setup)") }
        return hasSnapshot
    }()
}

extension Trait where Self == ConditionTrait {
    /// Needs root (namespaces, cgroups, loop devices). Never skipped with CI=true.
    public static var privileged: Self {
        .enabled(if: TestEnvironment.runPrivileged, "needs root; skipped outside CI only")
    }

    /// Needs root and the default snapshot. Never skipped with CI=true.
    public static var sandboxes: Self {
        .enabled(if: TestEnvironment.runWithSnapshot, "needs root and the default snapshot (scripts/setup); skipped outside CI only")
    }
}

/// A runner of the tests' own: a temporary data directory, a cgroup top-level name and an id
/// region no one else uses. `withTestRuntime` deletes every sandbox, the cgroups and the
/// directory afterwards, also when the test fails.
public struct TestRuntime: Sendable {
    public let manager: SandboxManager
    public let configuration: RuntimeConfiguration

    /// Every test runtime of this process gets its own id block: 16 slots in a region per process.
    nonisolated(unsafe) static var counter: UInt32 = 0
    static let lock = NSLock()

    /// A configuration of the tests' own (directory, cgroup name, id region, and a network
    /// namespace of its own playing the host, so the real host's network is never touched).
    /// `hostNamespace` (a path) makes a given namespace the host instead of a new one.
    public static func configuration(pidsMax: Int = CgroupLimits.defaultPidsMax, hostNamespace: String? = nil) throws -> RuntimeConfiguration {
        let n: UInt32 = lock.withLock {
            counter += 1
            return counter
        }
        let token = "\(getpid())-\(n)"
        let data = "/var/tmp/atoll-test-\(token)"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        // 2^30 upwards: far from production (2^28 upwards) and from host users. The region holds
        // 1024 blocks of 16 slots; a block per runtime, chosen by pid and a counter.
        let block = UInt32(getpid() % 16) * 64 + (n % 64)
        return RuntimeConfiguration(
            dataDirectory: data, snapshotsDirectory: TestEnvironment.snapshotsDirectory, cgroupName: "atoll-test-\(token)",
            idRangeStart: UInt32(1 << 30) + block * 16 * 65536, idRangeSlots: 16, pidsMax: pidsMax,
            network: try hostNamespace.map { try NetworkSettings(subnet: try SandboxSubnet(parsing: NetworkSettings.defaultSubnet), namespacePath: $0) }
                ?? TestHostNamespace.settings(for: data)
        )
    }

    public static func make(
        pidsMax: Int = CgroupLimits.defaultPidsMax, clock: any Clock = SystemClock(),
        hostNamespace: String? = nil
    ) async throws -> TestRuntime {
        let configuration = try configuration(pidsMax: pidsMax, hostNamespace: hostNamespace)
        return TestRuntime(manager: try await SandboxManager.open(configuration: configuration, clock: clock), configuration: configuration)
    }

    /// Deletes every sandbox, the cgroup top level and the data directory.
    public func cleanUp() async {
        await Self.cleanUp(configuration, manager: manager)
    }

    /// Cleans up whatever a runner on `configuration` left (also after a simulated crash).
    public static func cleanUp(_ configuration: RuntimeConfiguration, manager: SandboxManager? = nil) async {
        let manager = await { () async -> SandboxManager? in
            if let manager { return manager }
            return try? await SandboxManager.open(configuration: configuration)
        }()
        if let manager {
            await manager.close()
            do {
                try await manager.drainWarmPool()
                try await manager.deleteAll()
            } catch {
                Issue.record("cleanup: could not delete every sandbox: \(error)")
            }
            if let driver = manager.driver as? SandboxDriver { driver.cgroups.removeTopLevelIfEmpty() }
        }
        TestHostNamespace.release(for: configuration.dataDirectory)
        try? FileManager.default.removeItem(atPath: configuration.dataDirectory)
    }
}

/// Runs `body` with a fresh test runner and always cleans up.
public func withTestRuntime<T>(
    pidsMax: Int = CgroupLimits.defaultPidsMax, clock: any Clock = SystemClock(), hostNamespace: String? = nil,
    _ body: (SandboxManager) async throws -> T
) async throws -> T {
    let test = try await TestRuntime.make(pidsMax: pidsMax, clock: clock, hostNamespace: hostNamespace)
    do {
        let value = try await body(test.manager)
        await test.cleanUp()
        return value
    } catch {
        await test.cleanUp()
        throw error
    }
}

/// Runs `body` with a started sandbox of a fresh test runner.
public func withSandbox<T>(
    _ parameters: CreateParameters = CreateParameters(), pidsMax: Int = CgroupLimits.defaultPidsMax,
    _ body: (SandboxManager, Sandbox) async throws -> T
) async throws -> T {
    try await withTestRuntime(pidsMax: pidsMax) { manager in
        let sandbox = try await manager.create(parameters)
        return try await body(manager, sandbox)
    }
}

extension SandboxManager {
    /// Runs a shell command and returns the result (test convenience).
    public func sh(_ id: SandboxID, _ script: String, user: String? = nil, timeout: Double? = 60, env: [String: String] = [:]) async throws -> ExecResult {
        try await exec(id.rawValue, ExecRequest(command: .shell(script), env: env, user: user, timeout: timeout))
    }

    /// Runs code (test convenience).
    public func code(
        _ id: SandboxID, _ language: Language, _ code: String, arguments: [String] = [], user: String? = nil,
        timeout: Double? = 60
    ) async throws -> ExecResult {
        try await runCode(id.rawValue, CodeRequest(language: language, code: code, arguments: arguments, user: user, timeout: timeout))
    }

    /// The real driver (privileged tests look at its cgroups and disks).
    public nonisolated var hostDriver: SandboxDriver { driver as! SandboxDriver }

    public nonisolated func diskPath(_ sandbox: Sandbox) -> String { configuration.driver.diskPath(sandbox.id) }
}

/// Expects `body` to throw an `AtollError` with `code` whose message contains `text`.
public func expectError<T>(
    _ code: AtollError.Code, containing text: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> T
) async {
    do {
        _ = try await body()
        Issue.record("expected a \(code) error mentioning \"\(text)\", got success", sourceLocation: sourceLocation)
    } catch let error as AtollError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message.contains(text), "\(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}
