import AtollCore
public import AtollLinux
public import AtollSandbox
import AtollStore
public import Foundation
import Glibc
import Synchronization

/// What a terminal session is, as Daytona's `PtySessionInfo` has it.
public struct TerminalInfo: Sendable, Hashable {
    public var id: String
    public var cwd: String
    public var env: [String: String]
    public var size: TerminalSize
    public var createdAt: Date
    /// The shell still runs.
    public var active: Bool
}

/// What a client connected to a terminal receives.
public enum TerminalEvent: Sendable, Equatable {
    case output([UInt8])
    /// The shell ended: its exit code (128 + signal when killed) and, when it did not simply
    /// exit, why.
    case exited(code: Int32, reason: String?)
    /// Another client took the terminal over.
    case replaced
}

/// One terminal session: a shell on a pseudo-terminal of the sandbox, running whether or not a
/// client is connected. Output produced while no client is connected is kept (up to
/// `backlogLimit`, the oldest dropped first) and delivered first to the next client, so nothing
/// is lost between creating a session and reading from it. One client at a time: a new
/// connection takes the terminal over from the previous one.
public final class Terminal: Sendable {
    public let sandbox: String
    let initProcess: InitProcess
    public let input: LiveInput
    let created: TerminalInfo

    struct State {
        var size: TerminalSize
        var backlog: [UInt8] = []
        var client: AsyncStream<TerminalEvent>.Continuation?
        var clientID = 0
        var exit: TerminalEvent?
        /// When a client was last connected or the terminal last used (for the idle limit).
        var lastUse: Double
    }

    let state: Mutex<State>
    /// Output kept for a client that is not there.
    static let backlogLimit = 1 << 20

    init(sandbox: String, initProcess: InitProcess, info: TerminalInfo, input: LiveInput, now: Double) {
        self.sandbox = sandbox
        self.initProcess = initProcess
        self.input = input
        self.created = info
        self.state = Mutex(State(size: info.size, lastUse: now))
    }

    public var info: TerminalInfo {
        state.withLock { state in
            var info = created
            info.size = state.size
            info.active = state.exit == nil
            return info
        }
    }

    /// The pump thread's output.
    func deliver(_ bytes: [UInt8]) {
        state.withLock { state in
            if let client = state.client {
                client.yield(.output(bytes))
            } else {
                state.backlog.append(contentsOf: bytes)
                if state.backlog.count > Self.backlogLimit { state.backlog.removeFirst(state.backlog.count - Self.backlogLimit) }
            }
        }
    }

    func ended(_ event: TerminalEvent, now: Double) {
        state.withLock { state in
            state.exit = event
            state.lastUse = now
            state.client?.yield(event)
            state.client?.finish()
            state.client = nil
        }
    }

    /// Connects a client: it gets the output kept so far, then everything as it comes, then the
    /// end. A client connected before is told it was replaced.
    public func connect(now: Double) -> (events: AsyncStream<TerminalEvent>, id: Int) {
        let (stream, continuation) = AsyncStream<TerminalEvent>.makeStream()
        let id = state.withLock { state in
            state.client?.yield(.replaced)
            state.client?.finish()
            if !state.backlog.isEmpty { continuation.yield(.output(state.backlog)) }
            state.backlog = []
            state.lastUse = now
            state.clientID += 1
            if let exit = state.exit {
                continuation.yield(exit)
                continuation.finish()
            } else {
                state.client = continuation
            }
            return state.clientID
        }
        return (stream, id)
    }

    /// The client `id` went away (unless another took over since).
    public func disconnect(_ id: Int, now: Double) {
        state.withLock { state in
            guard state.clientID == id else { return }
            state.client?.finish()
            state.client = nil
            state.lastUse = now
        }
    }

    func resize(_ size: TerminalSize) {
        state.withLock { $0.size = size }
        input.resize(rows: UInt16(size.rows), columns: UInt16(size.columns))
    }

    /// Idle: no client, and unused for `limit` seconds.
    func idle(now: Double, limit: Double) -> Bool {
        state.withLock { $0.client == nil && now - $0.lastUse >= limit }
    }

    var hasEnded: Bool { state.withLock { $0.exit != nil } }
}

/// Daytona's PTY sessions: terminals in started sandboxes, kept apart from the lifecycle actor
/// like `Sessions`. A terminal with no client connected for `idleLimit` seconds is ended (its
/// shell killed), as is every terminal of a sandbox that stops (its processes die with it).
public actor Terminals {
    nonisolated let runner: SandboxManager
    private var bySandbox: [String: [String: Terminal]] = [:]
    /// Seconds a terminal may go without a client before it is ended.
    public nonisolated let idleLimit: Double
    private var sweeper: Task<Void, Never>?

    /// The default idle limit: half an hour without a connected client.
    public static let defaultIdleLimit = 1800.0
    /// Terminals per sandbox at most (each holds a shell, a pump thread and a descriptor).
    public static let perSandboxLimit = 64

    public init(runner: SandboxManager, idleLimit: Double = Terminals.defaultIdleLimit) {
        self.runner = runner
        self.idleLimit = idleLimit
    }

    nonisolated var now: Double { runner.clock.now().timeIntervalSince1970 }

    /// Starts a terminal: the user's login shell (its `SHELL`) on a new pseudo-terminal of
    /// `size`, in `cwd` (default the home directory) with `env` added.
    public func create(
        _ idOrName: String, id: String, cwd: String?, env: [String: String], size: TerminalSize, organizationId: String?
    ) async throws -> Terminal {
        try Sessions.checkSessionID(id)
        prune()
        let (machine, process) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        if bySandbox[sandbox]?[id] != nil { throw AtollError(.conflict, "PTY session \(id) already exists") }
        if (bySandbox[sandbox]?.count ?? 0) >= Self.perSandboxLimit {
            throw AtollError(.resourceExhausted, "sandbox \(sandbox) has \(Self.perSandboxLimit) PTY sessions already; kill one first")
        }
        let input = try LiveInput()
        let info = TerminalInfo(id: id, cwd: cwd ?? "", env: env, size: size, createdAt: Date(timeIntervalSince1970: now), active: true)
        let terminal = Terminal(sandbox: sandbox, initProcess: process, info: info, input: input, now: now)
        // A placeholder until the shell runs, so that a second create of the same id is refused.
        bySandbox[sandbox, default: [:]][id] = terminal
        let live: LiveProcess
        do {
            live = try await runner.driver.startLive(
                machine, initProcess: process,
                ExecRequest(command: .argv(ExecRequest.loginShell), env: env, cwd: cwd),
                terminal: size, input: input, onOutput: { _, bytes in terminal.deliver(bytes) })
        } catch {
            bySandbox[sandbox]?[id] = nil
            throw error
        }
        startSweeper()
        await runner.noteActivity(sandbox)
        Task { [weak self] in
            let event: TerminalEvent
            switch await live.wait() {
            case .success(let outcome):
                switch outcome.termination {
                case .exited(let code): event = .exited(code: code, reason: nil)
                case .signaled(let signal): event = .exited(code: 128 + signal, reason: "killed by signal \(signal)")
                }
            case .failure(let error): event = .exited(code: -1, reason: error.message)
            }
            terminal.ended(event, now: self?.now ?? 0)
        }
        return terminal
    }

    /// The terminal `id` of a started sandbox.
    public func terminal(_ idOrName: String, id: String, organizationId: String?) async throws -> Terminal {
        let (machine, process) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        guard let terminal = bySandbox[machine.id.rawValue]?[id], terminal.initProcess == process else {
            throw AtollError(.notFound, "PTY session \(id.prefix(64)) not found")
        }
        return terminal
    }

    public func list(_ idOrName: String, organizationId: String?) async throws -> [TerminalInfo] {
        let (machine, process) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        return (bySandbox[machine.id.rawValue] ?? [:]).values.filter { $0.initProcess == process }.map(\.info).sorted { $0.id < $1.id }
    }

    public func resize(_ idOrName: String, id: String, to size: TerminalSize, organizationId: String?) async throws -> TerminalInfo {
        let terminal = try await terminal(idOrName, id: id, organizationId: organizationId)
        guard !terminal.hasEnded else { throw AtollError(.gone, "PTY session \(id) has ended") }
        terminal.resize(size)
        await runner.noteActivity(terminal.sandbox)
        return terminal.info
    }

    /// Ends a terminal: its shell's whole process group is killed and the session forgotten.
    public func kill(_ idOrName: String, id: String, organizationId: String?) async throws {
        let terminal = try await terminal(idOrName, id: id, organizationId: organizationId)
        bySandbox[terminal.sandbox]?[id] = nil
        terminal.input.signal(SIGKILL)
        await runner.noteActivity(terminal.sandbox)
    }

    /// Forgets terminals of sandboxes that stopped or restarted, and ends idle ones.
    private func prune() {
        let at = now
        for (sandbox, terminals) in bySandbox {
            for (id, terminal) in terminals
            where !runner.isRunning(sandbox, as: terminal.initProcess) || terminal.idle(now: at, limit: idleLimit) {
                terminal.input.signal(SIGKILL)
                bySandbox[sandbox]?[id] = nil
            }
            if bySandbox[sandbox]?.isEmpty ?? false { bySandbox[sandbox] = nil }
        }
    }

    private func startSweeper() {
        guard sweeper == nil else { return }
        let interval = max(0.05, min(30, idleLimit / 4))
        sweeper = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                guard let self, await self.sweep() else { return }
            }
        }
    }

    /// One sweep; false once there is nothing left to watch (the sweeper ends, and the next
    /// create starts it again).
    private func sweep() -> Bool {
        prune()
        if bySandbox.isEmpty {
            sweeper = nil
            return false
        }
        return true
    }

}
