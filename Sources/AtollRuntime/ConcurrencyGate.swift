import AtollCore
import Foundation
import Synchronization

/// Bounds how many toolbox operations (execs, file operations, transfers) each organization runs
/// at once, so one tenant cannot take every thread of the work pool or every exec pump another
/// tenant needs. An operation beyond the limit waits its turn (first come, first served) for at
/// most `maximumWait`, then fails with `too_many_requests` naming the limit.
public final class ConcurrencyGate: Sendable {
    public let limit: Int
    public let maximumWait: Double

    struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }

    struct State {
        var running: [String: Int] = [:]
        var waiting: [String: [Waiter]] = [:]
        var nextID: UInt64 = 0
    }

    let state = Mutex(State())

    public init(limit: Int, maximumWait: Double = 30) {
        self.limit = max(1, limit)
        self.maximumWait = maximumWait
    }

    /// Runs `body` once the organization has a free slot.
    public func run<T: Sendable>(organization: String, _ body: () async throws -> T) async throws -> T {
        try await acquire(organization)
        defer { release(organization) }
        return try await body()
    }

    /// A slot held until `release()` (or until the slot is gone): for operations that outlive the
    /// call that started them, such as a download whose body streams after the handler returned.
    public func slot(organization: String) async throws -> Slot {
        try await acquire(organization)
        return Slot(gate: self, organization: organization)
    }

    public final class Slot: Sendable {
        let gate: ConcurrencyGate
        let organization: String
        let released = Mutex(false)

        init(gate: ConcurrencyGate, organization: String) {
            self.gate = gate
            self.organization = organization
        }

        public func release() {
            let first = released.withLock { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { gate.release(organization) }
        }

        deinit { release() }
    }

    /// Operations running now for `organization`.
    public func running(_ organization: String) -> Int { state.withLock { $0.running[organization] ?? 0 } }

    func acquire(_ organization: String) async throws {
        let id: UInt64? = state.withLock { s in
            if (s.running[organization] ?? 0) < limit {
                s.running[organization, default: 0] += 1
                return nil
            }
            s.nextID += 1
            return s.nextID
        }
        guard let id else { return }
        let admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            state.withLock { $0.waiting[organization, default: []].append(Waiter(id: id, continuation: continuation)) }
            let wait = maximumWait
            Task {
                try? await Task.sleep(for: .milliseconds(Int(wait * 1000)))
                self.expire(organization, id)
            }
        }
        guard admitted else {
            throw AtollError(
                .tooManyRequests,
                "organization \(organization) already runs \(limit) toolbox operations at once (the limit per organization); none finished within \(Int(maximumWait)) s"
            )
        }
    }

    func release(_ organization: String) {
        let next: Waiter? = state.withLock { s in
            if var queue = s.waiting[organization], !queue.isEmpty {
                let first = queue.removeFirst()
                s.waiting[organization] = queue.isEmpty ? nil : queue
                return first  // the slot passes to it directly
            }
            s.running[organization, default: 1] -= 1
            if s.running[organization] == 0 { s.running[organization] = nil }
            return nil
        }
        next?.continuation.resume(returning: true)
    }

    func expire(_ organization: String, _ id: UInt64) {
        let waiter: Waiter? = state.withLock { s in
            guard var queue = s.waiting[organization], let index = queue.firstIndex(where: { $0.id == id }) else { return nil }
            let waiter = queue.remove(at: index)
            s.waiting[organization] = queue.isEmpty ? nil : queue
            return waiter
        }
        waiter?.continuation.resume(returning: false)
    }
}
