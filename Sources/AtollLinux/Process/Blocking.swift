import Foundation

/// Runs blocking work (mkfs, tar, waiting for a kernel state to settle) on a thread of its own,
/// so it never occupies one of the few threads Swift concurrency has (two on a 2-core host).
public enum Blocking {
    public static func run<T: Sendable>(_ name: String, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    continuation.resume(returning: try work())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = name
            thread.start()
        }
    }
}
