public import AtollCore
import AtollSandbox
import AtollStore
import Foundation

/// Pausing (Daytona's `pause`): every process of the sandbox frozen by the cgroup freezer, its
/// memory kept, no CPU used or billed; `start` resumes it where it was. And the two timers that
/// go with it: auto-pause after inactivity, and a TTL after which the sandbox is deleted
/// whatever its state.
extension SandboxManager {
    static func checkAutoPause(_ minutes: Int) throws(AtollError) { try LifecycleIntervals.checkNeverOrMinutes(minutes, field: "autoPauseInterval") }
    static func checkTTL(_ minutes: Int) throws(AtollError) { try LifecycleIntervals.checkNeverOrMinutes(minutes, field: "ttlMinutes") }

    /// When a TTL of `minutes` set at `at` deletes the sandbox; nil for none (0).
    static func expiry(ttlMinutes minutes: Int, at: Double) -> Double? { minutes > 0 ? at + Double(minutes) * 60 : nil }

    /// Freezes a started sandbox: `paused`. Pausing a paused sandbox is fine.
    public func pause(_ idOrName: String, organizationId: String? = nil) async throws -> Sandbox {
        let current = try row(idOrName, organizationId: organizationId)
        switch current.sandboxState {
        case .paused, .pausing: return Sandbox(current)
        case .started: break
        default: throw Self.conflict(current, operation: "paused")
        }
        let (row, token) = try begin(current.id, from: [.started], to: .pausing, operation: "paused", reason: "pause")
        do {
            try await driver.pause(try Self.machine(row))
        } catch {
            fail(row.id, token: token, error, recoverable: true)
            throw error
        }
        return Sandbox(try finish(row.id, token: token, to: .paused, reason: "paused"))
    }

    /// Thaws a paused sandbox (what `start` does with one): `started`, its processes carrying on.
    func resume(_ current: SandboxRow) async throws -> Sandbox {
        let (row, token) = try begin(current.id, from: [.paused], to: .resuming, operation: "resumed", reason: "resume")
        do {
            try await driver.resume(try Self.machine(row))
        } catch {
            fail(row.id, token: token, error, recoverable: true)
            throw error
        }
        let resumed = try finish(row.id, token: token, to: .started, reason: "resumed")
        noteActivity(resumed.id)
        return Sandbox(resumed)
    }

    /// Daytona's `set_auto_pause_interval`: pause after `minutes` without activity (0 = never).
    public func setAutoPause(_ idOrName: String, minutes: Int, organizationId: String? = nil) throws -> Sandbox {
        try Self.checkAutoPause(minutes)
        return try change(idOrName, organizationId: organizationId) { $0.autoPause = minutes }
    }

    /// The key that signs the sandbox's file URLs (Daytona's `download_url` / `upload_url`),
    /// made on first use: 32 random bytes, hex.
    public func signingKey(_ idOrName: String, organizationId: String? = nil) throws -> String {
        let current = try row(idOrName, organizationId: organizationId)
        if let key = current.signingKey { return key }
        return try rotateSigningKey(current.id, organizationId: current.organizationId)
    }

    /// A new signing key: every URL signed with the old one stops working.
    public func rotateSigningKey(_ idOrName: String, organizationId: String? = nil) throws -> String {
        let key = Hex.string(SecureBytes.random(32))
        _ = try change(idOrName, organizationId: organizationId) { $0.signingKey = key }
        return key
    }

    /// Daytona's `set_ttl`: delete the sandbox `minutes` from now, whatever its state (0 = never).
    public func setTTL(_ idOrName: String, minutes: Int, organizationId: String? = nil) throws -> Sandbox {
        try Self.checkTTL(minutes)
        let expiresAt = Self.expiry(ttlMinutes: minutes, at: now)
        return try change(idOrName, organizationId: organizationId) { $0.expiresAt = expiresAt }
    }
}
