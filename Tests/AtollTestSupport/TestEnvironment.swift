import AtollCore
import AtollLinux
import AtollRuntime
import Foundation
import Glibc
import Testing

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

/// A runtime of the tests' own: a temporary data directory, a cgroup top-level name and an id
/// region no one else uses. `withTestRuntime` removes every sandbox, the cgroups and the
/// directory afterwards, also when the test fails.
public struct TestRuntime: Sendable {
    public let runtime: SandboxRuntime
    public let dataDirectory: String
    public let cgroupName: String

    /// Every test runtime of this process gets its own id block: 16 slots in a region per process.
    nonisolated(unsafe) static var counter: UInt32 = 0
    static let lock = NSLock()

    public static func make(pidsMax: Int = CgroupLimits.defaultPidsMax) throws -> TestRuntime {
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
        let start = UInt32(1 << 30) + block * 16 * 65536
        let config = RuntimeConfiguration(
            dataDirectory: data, snapshotsDirectory: TestEnvironment.snapshotsDirectory, cgroupName: "atoll-test-\(token)",
            idRangeStart: start, idRangeSlots: 16, pidsMax: pidsMax
        )
        return TestRuntime(runtime: try SandboxRuntime(configuration: config), dataDirectory: data, cgroupName: config.cgroupName)
    }

    /// Deletes every sandbox, the cgroup top level and the data directory.
    public func cleanUp() async {
        for info in await runtime.list() {
            do {
                try await runtime.delete(info.id)
            } catch {
                Issue.record("cleanup: could not delete sandbox \(info.id): \(error)")
            }
        }
        runtime.cgroups.removeTopLevelIfEmpty()
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }
}

/// Runs `body` with a fresh test runtime and always cleans up.
public func withTestRuntime<T>(pidsMax: Int = CgroupLimits.defaultPidsMax, _ body: (SandboxRuntime) async throws -> T) async throws -> T {
    let test = try TestRuntime.make(pidsMax: pidsMax)
    do {
        let value = try await body(test.runtime)
        await test.cleanUp()
        return value
    } catch {
        await test.cleanUp()
        throw error
    }
}

/// Runs `body` with a started sandbox of a fresh test runtime.
public func withSandbox<T>(_ spec: SandboxSpec = SandboxSpec(), pidsMax: Int = CgroupLimits.defaultPidsMax,
                           _ body: (SandboxRuntime, SandboxInfo) async throws -> T) async throws -> T {
    try await withTestRuntime(pidsMax: pidsMax) { runtime in
        let info = try await runtime.create(spec)
        return try await body(runtime, info)
    }
}

extension SandboxRuntime {
    /// Runs a shell command and returns the result (test convenience).
    public func sh(_ id: SandboxID, _ script: String, user: String? = nil, timeout: Double? = 60, env: [String: String] = [:]) async throws -> ExecResult {
        try await exec(id, ExecRequest(command: .shell(script), env: env, user: user, timeout: timeout))
    }
}
