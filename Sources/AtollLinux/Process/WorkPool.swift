import Foundation

/// A bounded pool of threads for blocking work: talking to sandbox agents (file operations,
/// transfers) and other system calls that may wait. Swift's cooperative pool has as many threads
/// as cores (two here), so a blocking call there would stall every other request; here it takes
/// one of at most `limit` threads, created on demand and retired after 30 s idle. Callers bound
/// each tenant's share on top (see the runtime's concurrency gate), so no tenant can hold every
/// thread another needs.
public final class WorkPool: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`.
    public let limit: Int
    let name: String
    let condition = NSCondition()
    var queue: [@Sendable () -> Void] = []
    var head = 0
    var threads = 0
    var idle = 0

    /// The runtime's pool for sandbox file work.
    public static let shared = WorkPool(name: "atoll-work", limit: 64)

    public init(name: String, limit: Int) {
        self.name = name
        self.limit = max(1, limit)
    }

    /// Runs `work` on a pool thread and returns its result.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit {
                do {
                    continuation.resume(returning: try work())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        queue.append(job)
        if idle == 0 && threads < limit {
            threads += 1
            let thread = Thread { [self] in loop() }
            thread.name = name
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    func loop() {
        condition.lock()
        while true {
            while head == queue.count {
                idle += 1
                let signalled = condition.wait(until: Date(timeIntervalSinceNow: 30))
                idle -= 1
                if !signalled && head == queue.count {
                    threads -= 1
                    condition.unlock()
                    return
                }
            }
            let job = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
            condition.lock()
        }
    }
}
