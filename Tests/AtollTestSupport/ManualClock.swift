public import AtollCore
public import Foundation

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
