import AtollCore
public import AtollLinux
import AtollSandbox
import AtollStore
public import Foundation
import Glibc
import Synchronization

/// An interpreter context as Daytona's `InterpreterContext` has it.
public struct InterpreterContextInfo: Sendable, Hashable {
    public var id: String
    public var cwd: String
    public var language: String
    public var createdAt: Date
    /// Its process still runs.
    public var active: Bool
}

/// What a run of code produces, in order.
public enum InterpreterEvent: Sendable, Equatable {
    case stdout(String)
    case stderr(String)
    case error(name: String, value: String, traceback: String)
}

/// How a run ended.
public enum InterpreterRunEnd: Sendable, Equatable {
    case completed
    /// The timeout passed: the run was interrupted (the context lives on) or, when it did not
    /// stop, the context was killed.
    case timedOut(contextSurvived: Bool)
}

/// One context: a long-lived Python process in the sandbox (`InterpreterDriver`) keeping its
/// namespace between runs. One run at a time.
final class InterpreterContext: Sendable {
    let info: InterpreterContextInfo
    let initProcess: InitProcess
    let input: LiveInput

    struct State {
        var lineBuffer: [UInt8] = []
        var run: AsyncStream<DriverMessage>.Continuation?
        var busy = false
        /// Why the process ended, once it has.
        var ended: String?
    }

    enum DriverMessage: Sendable {
        case event(InterpreterEvent)
        case done
        case ended(String)
    }

    let state = Mutex(State())

    init(info: InterpreterContextInfo, initProcess: InitProcess, input: LiveInput) {
        self.info = info
        self.initProcess = initProcess
        self.input = input
    }

    /// The driver's stdout: JSON lines, split here (the pump thread calls this).
    func receive(_ bytes: [UInt8]) {
        state.withLock { state in
            state.lineBuffer += bytes
            while let newline = state.lineBuffer.firstIndex(of: 10) {
                let line = Array(state.lineBuffer[..<newline])
                state.lineBuffer.removeFirst(newline + 1)
                guard let message = Self.parse(line) else { continue }
                state.run?.yield(message)
            }
            // A line without its end this long is not the driver's: drop it.
            if state.lineBuffer.count > 64 << 20 { state.lineBuffer = [] }
        }
    }

    static func parse(_ line: [UInt8]) -> DriverMessage? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let kind = object["t"] as? String else { return nil }
        switch kind {
        case "stdout": return .event(.stdout(object["text"] as? String ?? ""))
        case "stderr": return .event(.stderr(object["text"] as? String ?? ""))
        case "error":
            return .event(
                .error(name: object["name"] as? String ?? "Error", value: object["value"] as? String ?? "", traceback: object["traceback"] as? String ?? ""))
        case "done": return .done
        default: return nil
        }
    }

    func ended(_ reason: String) {
        state.withLock { state in
            state.ended = reason
            state.run?.yield(.ended(reason))
            state.run?.finish()
            state.run = nil
        }
    }

    var currentInfo: InterpreterContextInfo {
        var info = self.info
        info.active = state.withLock { $0.ended == nil }
        return info
    }
}

/// Daytona's stateful code interpreter: contexts (long-lived Python processes in the sandbox,
/// as its user, one per context, so contexts share nothing) and runs of code in them, streamed.
/// A run without a context uses the sandbox's `default` context, made on first use and made
/// again if its process died.
public actor Interpreters {
    nonisolated let runner: SandboxManager
    private var bySandbox: [String: [String: InterpreterContext]] = [:]

    /// Contexts per sandbox at most (each is a Python process).
    public static let perSandboxLimit = 32
    /// How long an interrupted run has to stop before its context is killed.
    public static let interruptGrace = 3.0
    public static let defaultContext = "default"

    public init(runner: SandboxManager) {
        self.runner = runner
    }

    nonisolated var now: Double { runner.clock.now().timeIntervalSince1970 }

    /// Forgets the contexts of sandboxes that stopped or restarted.
    private func prune() {
        for (sandbox, contexts) in bySandbox {
            for (id, context) in contexts where !runner.isRunning(sandbox, as: context.initProcess) {
                context.input.signal(SIGKILL)
                bySandbox[sandbox]?[id] = nil
            }
            if bySandbox[sandbox]?.isEmpty ?? false { bySandbox[sandbox] = nil }
        }
    }

    /// Makes a context: a new Python process in `cwd` (default the user's home).
    public func create(_ idOrName: String, cwd: String?, language: String?, organizationId: String?) async throws -> InterpreterContextInfo {
        if let language, !language.isEmpty, language.lowercased() != "python" {
            throw AtollError(.invalidArgument, "language \"\(language.prefix(32))\": the interpreter runs python only")
        }
        return try await make(idOrName, id: UUID().uuidString.lowercased(), cwd: cwd, organizationId: organizationId).currentInfo
    }

    private func make(_ idOrName: String, id: String, cwd: String?, organizationId: String?) async throws -> InterpreterContext {
        prune()
        let (machine, process) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        if (bySandbox[sandbox]?.count ?? 0) >= Self.perSandboxLimit {
            throw AtollError(.resourceExhausted, "sandbox \(sandbox) has \(Self.perSandboxLimit) interpreter contexts already; delete one first")
        }
        let runtime = try runner.driver.languageRuntime(machine)
        let input = try LiveInput()
        let context = InterpreterContext(
            info: InterpreterContextInfo(id: id, cwd: cwd ?? "", language: "python", createdAt: Date(timeIntervalSince1970: now), active: true),
            initProcess: process, input: input)
        bySandbox[sandbox, default: [:]][id] = context
        let live: LiveProcess
        do {
            live = try await runner.driver.startLive(
                machine, initProcess: process,
                ExecRequest(command: .argv([runtime.python, "-u", "-c", InterpreterDriver.python]), cwd: cwd), terminal: nil, input: input,
                onOutput: { channel, bytes in if channel == .stdout { context.receive(bytes) } })
        } catch {
            bySandbox[sandbox]?[id] = nil
            throw error
        }
        Task {
            let reason: String
            switch await live.wait() {
            case .success(let outcome):
                switch outcome.termination {
                case .exited(let code): reason = "its process exited with code \(code)"
                case .signaled(SIGKILL): reason = "its process was killed (SIGKILL: out of memory, or its run did not stop when interrupted)"
                case .signaled(let signal): reason = "its process was killed by signal \(signal)"
                }
            case .failure(let error): reason = error.message
            }
            context.ended(reason)
        }
        await runner.noteActivity(sandbox)
        return context
    }

    public func list(_ idOrName: String, organizationId: String?) async throws -> [InterpreterContextInfo] {
        prune()
        let (machine, _) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        return (bySandbox[machine.id.rawValue] ?? [:]).values.map(\.currentInfo).filter { $0.id != Self.defaultContext }.sorted { $0.createdAt < $1.createdAt }
    }

    public func delete(_ idOrName: String, id: String, organizationId: String?) async throws {
        prune()
        let (machine, _) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        guard let context = bySandbox[machine.id.rawValue]?.removeValue(forKey: id) else {
            throw AtollError(.notFound, "interpreter context \(id.prefix(64)) not found")
        }
        context.input.signal(SIGKILL)
    }

    /// Runs `code` in the context `contextId` (default: the sandbox's default context), giving
    /// `onEvent` its output and errors as they come. With `timeout`, the run is interrupted
    /// (KeyboardInterrupt) when it passes, and its context killed if it does not stop within
    /// `interruptGrace`.
    public func run(
        _ idOrName: String, contextId: String?, code: String, env: [String: String], timeout: Double?, organizationId: String?,
        onEvent: @Sendable (InterpreterEvent) async throws -> Void
    ) async throws -> InterpreterRunEnd {
        try EnvironmentValidation.validate(env, field: "envs")
        try ExecRequest.checkTimeout(timeout)
        prune()
        let (machine, _) = try await runner.runningMachine(idOrName, organizationId: organizationId)
        let sandbox = machine.id.rawValue
        let context: InterpreterContext
        if let contextId, contextId != Self.defaultContext {
            guard let found = bySandbox[sandbox]?[contextId] else { throw AtollError(.notFound, "interpreter context \(contextId.prefix(64)) not found") }
            context = found
        } else if let found = bySandbox[sandbox]?[Self.defaultContext], found.state.withLock({ $0.ended == nil }) {
            context = found
        } else {
            context = try await make(idOrName, id: Self.defaultContext, cwd: nil, organizationId: organizationId)
        }
        let request = try JSONSerialization.data(withJSONObject: ["code": code, "env": env]) + Data([10])
        let (messages, continuation) = AsyncStream<InterpreterContext.DriverMessage>.makeStream()
        let refusal: AtollError? = context.state.withLock { state in
            if let ended = state.ended {
                return AtollError(.gone, "interpreter context \(context.info.id) has ended: \(ended); delete it and create another")
            }
            if state.busy { return AtollError(.conflict, "interpreter context \(context.info.id) is running other code") }
            state.busy = true
            state.run = continuation
            return nil
        }
        if let refusal { throw refusal }
        defer {
            context.state.withLock { state in
                state.busy = false
                state.run = nil
            }
        }
        try context.input.write(Array(request))
        await runner.noteActivity(sandbox)
        let input = context.input
        let deadline = timeout.map { now + $0 }
        // The timeout: interrupt, then (if it will not stop) kill.
        let watchdog = Task {
            guard let deadline else { return }
            try await Task.sleep(for: .milliseconds(Int(max(0, deadline - self.now) * 1000)))
            input.signal(SIGINT)
            try await Task.sleep(for: .milliseconds(Int(Self.interruptGrace * 1000)))
            input.signal(SIGKILL)
        }
        defer { watchdog.cancel() }
        for await message in messages {
            switch message {
            case .event(let event): try await onEvent(event)
            case .done:
                await runner.noteActivity(sandbox)
                return deadline.map { now >= $0 } ?? false ? .timedOut(contextSurvived: true) : .completed
            case .ended(let reason):
                if let deadline, now >= deadline { return .timedOut(contextSurvived: false) }
                try await onEvent(.error(name: "ContextEnded", value: "interpreter context \(context.info.id) ended: \(reason)", traceback: ""))
                return .completed
            }
        }
        throw AtollError(.internal, "interpreter context \(context.info.id) stopped answering")
    }
}
