import AtollCore
public import AtollRuntime
import AtollSandbox
import Foundation
import Glibc
public import Testing

/// A runner on a fake driver, a manual clock and a throwaway database: no root needed.
public struct RunnerFixture: Sendable {
    public let manager: SandboxManager
    public let driver: FakeDriver
    public let clock: ManualClock
    public let configuration: RuntimeConfiguration

    /// Opens another runner on the same database (a restart).
    public func reopen() async throws -> SandboxManager {
        try await SandboxManager.open(configuration: configuration, driver: driver, clock: clock)
    }
}

public func withRunner<T>(
    deadlines: TransitionDeadlines = .defaults, configure: (inout RuntimeConfiguration) -> Void = { _ in },
    _ body: (RunnerFixture) async throws -> T
) async throws -> T {
    let dir = "/tmp/atoll-runner-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var configuration = RuntimeConfiguration(dataDirectory: dir, cgroupName: "unused", idRangeSlots: 64)
    configuration.deadlines = deadlines
    configure(&configuration)
    let driver = FakeDriver()
    let clock = ManualClock()
    let manager = try await SandboxManager.open(configuration: configuration, driver: driver, clock: clock)
    let fixture = RunnerFixture(manager: manager, driver: driver, clock: clock, configuration: configuration)
    let value = try await body(fixture)
    await manager.close()
    return value
}

/// Polls until `condition` holds (for background work), failing after a few seconds.
public func eventually(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<500 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
}
