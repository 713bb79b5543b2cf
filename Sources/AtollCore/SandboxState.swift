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
    case error
    case buildFailed = "build_failed"
    case pendingBuild = "pending_build"
    case destroying
    case destroyed

    /// States an operation is in progress in; a second lifecycle call meanwhile is a conflict.
    public var isTransitional: Bool {
        switch self {
        case .creating, .starting, .stopping, .archiving, .restoring, .resizing, .destroying, .pendingBuild: return true
        default: return false
        }
    }

    /// The transition table: which states may follow this one.
    public var successors: Set<SandboxState> {
        switch self {
        case .pendingBuild: return [.creating, .buildFailed, .destroying, .error]
        case .creating: return [.starting, .started, .stopped, .error, .destroying]
        case .starting: return [.started, .stopped, .error, .stopping]
        case .started: return [.stopping, .resizing, .error, .destroying]
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
