import AtollCore
import Foundation
import Synchronization
import Testing

@testable import AtollRuntime

/// How many operations run at once, and the most seen.
final class Concurrent: Sendable {
    let state = Mutex((now: 0, max: 0))

    func enter() {
        state.withLock {
            $0.now += 1
            $0.max = max($0.max, $0.now)
        }
    }
    func leave() { state.withLock { $0.now -= 1 } }
    var peak: Int { state.withLock { $0.max } }
}

@Suite("per-organization concurrency of toolbox operations")
struct ConcurrencyGateTests {
    @Test("an organization runs at most its limit at once; others are not held up; the rest wait their turn")
    func limit() async throws {
        let gate = ConcurrencyGate(limit: 2, maximumWait: 30)
        let concurrent = Concurrent()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    try await gate.run(organization: "busy") {
                        concurrent.enter()
                        try await Task.sleep(for: .milliseconds(50))
                        concurrent.leave()
                    }
                }
            }
            // Another organization gets through at once while "busy" is saturated.
            try await Task.sleep(for: .milliseconds(10))
            let start = ContinuousClock.now
            try await gate.run(organization: "other") {}
            #expect(ContinuousClock.now - start < .milliseconds(40))
            try await group.waitForAll()
        }
        #expect(concurrent.peak == 2)
        #expect(gate.running("busy") == 0 && gate.running("other") == 0)
    }

    @Test("a caller that waits longer than the limit gets too_many_requests naming it; a held slot is released once")
    func waitLimit() async throws {
        let gate = ConcurrencyGate(limit: 1, maximumWait: 0.1)
        let slot = try await gate.slot(organization: "acme")
        do {
            try await gate.run(organization: "acme") {}
            Issue.record("a second operation ran past the limit")
        } catch let error as AtollError {
            #expect(error.code == .tooManyRequests && error.code.httpStatus == 429)
            #expect(error.message.contains("acme") && error.message.contains("1 toolbox operations"))
        }
        slot.release()
        slot.release()
        #expect(gate.running("acme") == 0)
        try await gate.run(organization: "acme") {}
    }
}
