public import AtollCore
public import AtollRuntime
public import AtollWire
import Foundation

/// The wire form of a sandbox, shared by atolld and the embedded CLI.
extension SandboxDTO {
    // ISO8601DateFormatter is thread-safe once configured.
    nonisolated(unsafe) static let iso: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    public init(_ s: Sandbox, toolboxURL: String, version: String = AtollVersion.current) {
        self.init(
            id: s.id.rawValue, organizationId: s.organizationId, name: s.name, snapshot: s.snapshot.isEmpty ? nil : s.snapshot,
            user: s.user, env: s.env, labels: s.labels, networkBlockAll: s.network.blockAll, networkAllowList: s.network.allowListText,
            cpu: s.resources.cpu, memory: s.resources.memoryGiB, disk: s.resources.diskGiB, state: s.state.rawValue,
            desiredState: Self.desiredState(s.state), errorReason: s.errorReason, recoverable: s.state == .error ? s.recoverable : nil,
            autoStopInterval: s.intervals.autoStop, autoArchiveInterval: s.intervals.autoArchive, autoDeleteInterval: s.intervals.autoDelete,
            createdAt: Self.iso.string(from: s.createdAt), updatedAt: Self.iso.string(from: s.updatedAt),
            lastActivityAt: Self.iso.string(from: s.lastActivityAt), daemonVersion: version, toolboxProxyUrl: toolboxURL)
        self.public = s.isPublic
        autoPauseInterval = s.autoPause
        autoDestroyAt = s.expiresAt.map { Self.iso.string(from: $0) }
    }

    /// Where a sandbox is headed (Daytona's `desiredState`).
    public static func desiredState(_ state: SandboxState) -> String? {
        switch state {
        case .creating, .starting, .started, .restoring, .pendingBuild, .resuming: return "started"
        case .pausing, .paused: return "paused"
        case .stopping, .stopped: return "stopped"
        case .archiving, .archived: return "archived"
        case .resizing: return "resized"
        case .destroying, .destroyed: return "destroyed"
        case .error, .buildFailed: return nil
        }
    }
}
