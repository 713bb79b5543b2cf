/// Daytona's sandbox states, with their wire names.
public enum SandboxState: String, Sendable, Codable, CaseIterable {
    case creating
    case starting
    case started
    case stopping
    case stopped
    case archiving
    case archived
    case restoring
    case resizing
    /// Every process frozen (cgroup freezer): memory kept, no CPU used; `start` resumes it.
    case pausing
    case paused
    case resuming
    case error
    case buildFailed = "build_failed"
    case pendingBuild = "pending_build"
    case destroying
    case destroyed

    /// States an operation is in progress in; a second lifecycle call meanwhile is a conflict.
    public var isTransitional: Bool {
        switch self {
        case .creating, .starting, .stopping, .archiving, .restoring, .resizing, .destroying, .pendingBuild, .pausing, .resuming: return true
        default: return false
        }
    }

    /// The transition table: which states may follow this one.
    public var successors: Set<SandboxState> {
        switch self {
        case .pendingBuild: return [.creating, .buildFailed, .destroying, .error]
        case .creating: return [.starting, .started, .stopped, .error, .destroying]
        case .starting: return [.started, .stopped, .error, .stopping]
        case .started: return [.stopping, .resizing, .pausing, .error, .destroying]
        case .pausing: return [.paused, .started, .stopping, .stopped, .error, .destroying]
        case .paused: return [.resuming, .stopping, .error, .destroying]
        case .resuming: return [.started, .stopping, .stopped, .error]
        case .stopping: return [.stopped, .error, .destroying]
        case .stopped: return [.starting, .archiving, .resizing, .destroying, .error]
        case .archiving: return [.archived, .stopped, .error, .starting]
        case .archived: return [.restoring, .destroying, .error]
        case .restoring: return [.starting, .started, .archived, .stopped, .error]
        case .resizing: return [.started, .stopped, .error]
        case .error: return [.starting, .stopped, .destroying]
        case .buildFailed: return [.destroying]
        case .destroying: return [.destroyed, .error]
        case .destroyed: return []
        }
    }

    /// Whether moving from this state to `next` is allowed. Taking over a transitional state
    /// abandoned by a dead process (the same state again) is allowed too.
    public func canTransition(to next: SandboxState) -> Bool {
        successors.contains(next) || (isTransitional && next == self)
    }
}
