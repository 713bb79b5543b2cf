import Foundation

/// Where the runtime gets the time from. Production uses the system clock; tests use a
/// `ManualClock` so minute-long intervals pass in milliseconds.
public protocol Clock: Sendable {
    func now() -> Date
}

/// The wall clock.
public struct SystemClock: Clock {
    public init() {}
    public func now() -> Date { Date() }
}

/// A clock that only moves when told to.
public final class ManualClock: Clock, @unchecked Sendable {
    // @unchecked: `current` is only touched under `lock`.
    private let lock = NSLock()
    private var current: Date

    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = start
    }

    public func now() -> Date { lock.withLock { current } }

    /// Moves the clock forward.
    public func advance(by seconds: TimeInterval) {
        lock.withLock { current += seconds }
    }

    public func advance(minutes: Double) { advance(by: minutes * 60) }

    /// Sets the time (tests of calendar boundaries such as midnight UTC).
    public func set(_ date: Date) {
        lock.withLock { current = date }
    }
}
