public import Foundation

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
