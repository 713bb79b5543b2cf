public import AtollCore
public import AtollImage
public import AtollLinux
public import AtollSandbox
import Foundation
import Glibc

/// A sandbox driver that records what the runner asks of it and does nothing on the host.
/// Operations can be made to fail once or to wait at a gate, to stage races and timeouts.
public final class FakeDriver: SandboxDriving, @unchecked Sendable {
    public init() {}

    // @unchecked: all state is behind `lock`.
    private let lock = NSLock()
    private var log: [String] = []
    private var disks: Set<SandboxID> = []
    private var archives: [String: SandboxID] = [:]
    private var failures: [String: AtollError] = [:]
    private var gates: [String: Bool] = [:]
    /// What each network preparation (one per runner open) was given, kept apart from `calls`.
    private var preparations: [[String]] = []
    private var usages: [SandboxID: CgroupUsage] = [:]
    private var diskSizes: [SandboxID: UInt64] = [:]
    public var snapshots: Set<String> = ["default"]
    private var graces: [Double] = []
    /// The grace period of every stop, in order.
    public var stopGraces: [Double] { lock.withLock { graces } }

    /// PID 1 of a fake sandbox: this test process, which is certainly running.
    public static let liveInit = InitProcess(pid: getpid(), startTime: ProcFS.startTime(getpid()) ?? 0)

    public var calls: [String] { lock.withLock { log } }
    public var networkPreparations: [[String]] { lock.withLock { preparations } }
    public func calls(_ prefix: String) -> [String] { calls.filter { $0.hasPrefix(prefix) } }
    public func hasArchive(_ id: SandboxID) -> Bool { lock.withLock { archives.values.contains(id) } }
    public func diskExists(_ id: SandboxID) -> Bool { lock.withLock { disks.contains(id) } }

    /// The next call of `operation` throws `error`.
    public func failNext(_ operation: String, _ error: AtollError) { lock.withLock { failures[operation] = error } }
    /// Calls of `operation` wait until `open(operation)` (or their cancellation).
    public func close(_ operation: String) { lock.withLock { gates[operation] = false } }
    public func open(_ operation: String) { lock.withLock { gates[operation] = true } }

    private func enter(_ operation: String, _ detail: String, cancellation: Cancellation? = nil) async throws {
        lock.withLock { log.append("\(operation) \(detail)") }
        while lock.withLock({ gates[operation] == false }) {
            if cancellation?.isCancelled == true { throw AtollError(.conflict, "cancelled") }
            try await Task.sleep(for: .milliseconds(2))
        }
        if let error = lock.withLock({ failures.removeValue(forKey: operation) }) { throw error }
    }

    public func checkSnapshot(_ name: String) throws {
        guard snapshots.contains(name) else { throw AtollError(.notFound, "snapshot \"\(name)\" not found") }
    }

    public func provision(_ machine: SandboxMachine) async throws {
        try await enter("provision", machine.id.rawValue)
        _ = lock.withLock { disks.insert(machine.id) }
    }

    public func start(_ machine: SandboxMachine) async throws -> InitProcess {
        try await enter("start", machine.id.rawValue)
        return Self.liveInit
    }

    public func stop(_ machine: SandboxMachine, initProcess: InitProcess?, grace: Double) async throws {
        lock.withLock { graces.append(grace) }
        try await enter("stop", machine.id.rawValue)
    }

    public func pause(_ machine: SandboxMachine) async throws {
        try await enter("pause", machine.id.rawValue)
    }

    public func resume(_ machine: SandboxMachine) async throws {
        try await enter("resume", machine.id.rawValue)
    }

    public func destroy(_ machine: SandboxMachine) async throws {
        try await enter("destroy", machine.id.rawValue)
        _ = lock.withLock { disks.remove(machine.id) }
    }

    public func hasDisk(_ machine: SandboxMachine) -> Bool { diskExists(machine.id) }

    public func hasAgent(_ machine: SandboxMachine) -> Bool { true }

    public func exec(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ExecResult {
        try await enter("exec", machine.id.rawValue)
        return ExecResult(termination: .exited(0), timedOut: false, oomKilled: false, stdout: Array("ok\n".utf8), stderr: [], truncated: false, seconds: 0)
    }

    public func runCode(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: CodeRequest,
        onOutput: (@Sendable (OutputChannel, [UInt8]) -> Void)?
    ) async throws -> ExecResult {
        try await enter("code", "\(machine.id) \(request.language.rawValue)")
        return ExecResult(termination: .exited(0), timedOut: false, oomKilled: false, stdout: [], stderr: [], truncated: false, seconds: 0)
    }

    public func languageRuntime(_ machine: SandboxMachine) throws -> LanguageRuntime { LanguageRuntime() }

    public func startLive(
        _ machine: SandboxMachine, initProcess: InitProcess, _ request: ExecRequest, terminal: TerminalSize?,
        input: LiveInput, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> LiveProcess {
        try await enter("live", machine.id.rawValue)
        throw AtollError(.unavailable, "the fake driver runs no live processes")
    }

    public func files(_ machine: SandboxMachine, initProcess: InitProcess, user: String?) throws -> SandboxFiles {
        throw AtollError(.unavailable, "the fake driver has no files")
    }

    public func snapshot(of machine: SandboxMachine) throws -> Snapshot {
        throw AtollError(.unavailable, "the fake driver has no snapshots")
    }

    public func captureLayer(_ machine: SandboxMachine, store: ImageStore, live: Bool) async throws -> (diffID: String, report: UnpackReport) {
        try await enter("capture", machine.id.rawValue)
        throw AtollError(.unavailable, "the fake driver has no disks to capture")
    }

    public func updateLimits(_ machine: SandboxMachine) async throws {
        try await enter("limits", "\(machine.id) \(machine.resources.cpu) \(machine.resources.memoryGiB)")
    }

    public func growDisk(_ machine: SandboxMachine) async throws {
        try await enter("grow", "\(machine.id) \(machine.resources.diskGiB)")
    }

    public func archive(_ machine: SandboxMachine, cancellation: Cancellation) async throws -> ArchiveInfo {
        try await enter("archive", machine.id.rawValue, cancellation: cancellation)
        let path = "/fake/archive/\(machine.id).tar.zst"
        lock.withLock { archives[path] = machine.id }
        return ArchiveInfo(path: path, bytes: 1234, sha256: String(repeating: "a", count: 64))
    }

    public func restore(_ machine: SandboxMachine, from archive: ArchiveInfo) async throws {
        try await enter("restore", machine.id.rawValue)
        _ = lock.withLock { disks.insert(machine.id) }
    }

    public func removeDisk(_ machine: SandboxMachine) async throws {
        lock.withLock {
            log.append("removeDisk \(machine.id)")
            disks.remove(machine.id)
        }
    }

    public func removeArchive(path: String) throws {
        lock.withLock {
            log.append("removeArchive \(path)")
            archives[path] = nil
        }
    }

    public func usage(_ machine: SandboxMachine) async throws -> CgroupUsage { lock.withLock { usages[machine.id] ?? CgroupUsage() } }
    public func diskBytes(_ id: SandboxID) -> UInt64 { lock.withLock { disks.contains(id) ? diskSizes[id] ?? 1 << 20 : 0 } }

    /// What `usage` reports for a sandbox from now on (the meter's readings).
    public func setUsage(_ id: SandboxID, _ usage: CgroupUsage) { lock.withLock { usages[id] = usage } }
    public func setDiskBytes(_ id: SandboxID, _ bytes: UInt64) { lock.withLock { diskSizes[id] = bytes } }

    public func removeOrphans(isKnown: @escaping @Sendable (SandboxID) -> Bool) async -> [String] { [] }
}

extension FakeDriver {
    public func prepareNetwork(current: @escaping @Sendable () throws -> [SandboxMachine]) async throws -> [String] {
        let machines = try current()
        lock.withLock { preparations.append(machines.map(\.id.rawValue).sorted()) }
        return []
    }

    public func updateNetworkPolicy(current: @escaping @Sendable () throws -> SandboxMachine?) async throws {
        let machine = try current()
        let policy = machine?.network.map { $0.policy.blockAll ? "block-all" : $0.policy.allowListText ?? "open" } ?? "not running"
        try await enter("updateNetworkPolicy", "\(machine?.id.rawValue ?? "-") \(policy)")
    }
}
