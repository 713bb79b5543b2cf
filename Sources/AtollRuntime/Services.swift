import Foundation
public import ServiceLifecycle

// The runner's background loops as swift-service-lifecycle services: atolld runs them in its
// `ServiceGroup` beside the HTTP server, so SIGTERM ends them gracefully, in order (the server
// first, then these), and a loop that throws takes the daemon down instead of dying silently.
// Each loop only calls into the runner; what it does on each round is the runner's business.

/// The automated lifecycle: one `sweep` every `configuration.sweepInterval` seconds (auto-stop,
/// -archive, -delete, transition deadlines, owners that went away).
public struct SweeperService: Service {
    let runner: SandboxManager

    public init(runner: SandboxManager) {
        self.runner = runner
    }

    public func run() async throws {
        let interval = Duration.milliseconds(Int(runner.configuration.sweepInterval * 1000))
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            guard !Task.isShuttingDownGracefully && !Task.isCancelled else { break }
            _ = await runner.sweep()
        }
    }
}

/// Per-second metering: one `meterRound` every `configuration.metering.interval` seconds.
public struct MeterService: Service {
    let runner: SandboxManager

    public init(runner: SandboxManager) {
        self.runner = runner
    }

    public func run() async throws {
        let interval = Duration.milliseconds(Int(runner.configuration.metering.interval * 1000))
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await runner.meterRound()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

/// Keeps the warm pools filled (`ATOLL_WARM_POOL`): builds one member at a time, at background
/// priority, whenever a pool is short; a claim wakes it at once. On shutdown the member being
/// built is finished or failed like any create, then the loop ends.
public struct WarmPoolService: Service {
    let runner: SandboxManager

    public init(runner: SandboxManager) {
        self.runner = runner
    }

    public func run() async throws {
        let wakes = await runner.openWarmPoolWakes()
        // Builds run at background priority: the requests being served come first.
        let loop = Task(priority: .background) { await runner.keepWarmPoolFilled(wakes) }
        try? await cancelWhenGracefulShutdown {
            await withTaskCancellationHandler {
                await loop.value
            } onCancel: {
                loop.cancel()
            }
        }
        await runner.closeWarmPoolWakes()
    }
}
