import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import AtollWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@testable import AtollAPI
@testable import AtollRuntime

/// The interactive toolbox's parts that need no sandbox: which paths are WebSockets, the PTY's
/// environment token, the interpreter driver's lines, and the REST routes' errors on the fake
/// driver. Sessions, terminals and the interpreter at work are in Tests/sdk/test_interactive.py.
extension RouteTests {
    @Test("toolbox WebSocket paths are recognised, others are not")
    func socketPaths() {
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/pty/create-connect")?.endpoint == .createTerminal)
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/pty/s1/connect")?.endpoint == .connectTerminal("s1"))
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/interpreter/execute")?.endpoint == .interpreter)
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/exec-stream")?.endpoint == .execStream)
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/session/s/command/c/logs")?.endpoint == .followLogs(session: "s", command: "c"))
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/session/entrypoint/logs")?.endpoint == .followEntrypoint)
        #expect(ToolboxSockets.endpoint("/toolbox/abc/process/session/entrypoint/logs")?.sandbox == "abc")
        for path in ["/toolbox/abc/lsp/completions", "/api/sandbox", "/toolbox/abc/process/pty", "/toolbox/abc/process/pty/s/connect/x", "/"] {
            #expect(ToolboxSockets.endpoint(path) == nil, "\(path)")
        }
    }

    @Test("the PTY's environment arrives as base64url JSON in a subprotocol token")
    func terminalEnvironment() throws {
        let json = Data(#"{"A":"1","B":"x y"}"#.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        #expect(try ToolboxSockets.terminalEnv(["X-Daytona-Pty-Exit-Control", "X-Daytona-Pty-Envs~\(json)"]) == ["A": "1", "B": "x y"])
        #expect(try ToolboxSockets.terminalEnv(["X-Daytona-Pty-Exit-Control"]) == [:])
        #expect(throws: AtollError.self) { try ToolboxSockets.terminalEnv(["X-Daytona-Pty-Envs~!!notbase64"]) }
    }

    @Test("the interpreter driver's JSON lines become events; other lines are ignored")
    func interpreterLines() async throws {
        let context = InterpreterContext(
            info: InterpreterContextInfo(id: "c", cwd: "", language: "python", createdAt: Date(), active: true),
            initProcess: InitProcess(pid: 1, startTime: 1), input: try LiveInput())
        let (stream, continuation) = AsyncStream<InterpreterContext.DriverMessage>.makeStream()
        context.state.withLock { $0.run = continuation }
        context.receive(Array(#"{"t":"stdout","text":"hi\n"}"#.utf8) + [10] + Array("garbage\n{\"t\":\"err".utf8))
        context.receive(Array(#"or","name":"ValueError","value":"v","traceback":"tb"}"#.utf8) + [10] + Array(#"{"t":"done"}"#.utf8) + [10])
        continuation.finish()
        var seen: [String] = []
        for await message in stream {
            switch message {
            case .event(.stdout(let text)): seen.append("out:\(text)")
            case .event(.error(let name, let value, let traceback)): seen.append("error:\(name):\(value):\(traceback)")
            case .done: seen.append("done")
            default: seen.append("other")
            }
        }
        #expect(seen == ["out:hi\n", "error:ValueError:v:tb", "done"])
    }

    @Test("PTY, input and interpreter routes name what is wrong")
    func interactiveErrors() async throws {
        try await withAPI { api, _ in
            let id = try await api.ok(SandboxDTO.self, .post, "/api/sandbox", json: "{}").id
            try await api.fails(.get, "/toolbox/\(id)/process/pty/nope", status: 404, code: "not_found", containing: "PTY session nope not found")
            try await api.fails(
                .post, "/toolbox/\(id)/process/pty/nope/resize", json: #"{"cols":5000,"rows":10}"#, status: 400, code: "invalid_argument",
                containing: "outside 1..1000")
            try await api.fails(.get, "/toolbox/\(id)/process/pty/create-connect?id=a&rows=0", status: 400, code: "invalid_argument", containing: "rows")
            try await api.fails(.get, "/toolbox/\(id)/process/pty/create-connect?id=a", status: 400, code: "invalid_argument", containing: "WebSocket")
            try await api.fails(
                .post, "/toolbox/\(id)/process/session/s/command/c/input", json: #"{"data":"x"}"#, status: 404, code: "not_found",
                containing: "session s not found")
            try await api.fails(
                .post, "/toolbox/\(id)/process/interpreter/context", json: #"{"language":"ruby"}"#, status: 400, code: "invalid_argument",
                containing: "python only")
            try await api.fails(.delete, "/toolbox/\(id)/process/interpreter/context/x", status: 404, code: "not_found", containing: "context x")
            try await api.fails(.get, "/toolbox/nosuch/process/pty", status: 404, code: "not_found", containing: "nosuch")
        }
    }

    @Test("a terminal keeps output for an absent client (the newest 1 MiB), hands over to a new client, and is idle only without one")
    func terminalClients() async throws {
        let info = TerminalInfo(id: "t", cwd: "", env: [:], size: try TerminalSize(rows: 24, columns: 80), createdAt: Date(), active: true)
        let terminal = Terminal(sandbox: "s", initProcess: InitProcess(pid: 1, startTime: 1), info: info, input: try LiveInput(), now: 100)
        #expect(!terminal.idle(now: 150, limit: 60))
        #expect(terminal.idle(now: 161, limit: 60))
        terminal.deliver([1, 2, 3])
        terminal.deliver([UInt8](repeating: 7, count: Terminal.backlogLimit))
        let (first, firstClient) = terminal.connect(now: 200)
        var iterator = first.makeAsyncIterator()
        let kept = await iterator.next()
        #expect(kept == .output([UInt8](repeating: 7, count: Terminal.backlogLimit)), "the oldest bytes went first")
        #expect(!terminal.idle(now: 1000, limit: 60), "a connected client keeps it")
        terminal.deliver([9])
        #expect(await iterator.next() == .output([9]))
        let (second, secondClient) = terminal.connect(now: 1000)
        #expect(await iterator.next() == .replaced)
        terminal.disconnect(firstClient, now: 1000)  // the replaced client going away changes nothing
        #expect(!terminal.idle(now: 2000, limit: 60))
        terminal.ended(.exited(code: 3, reason: nil), now: 2000)
        var secondIterator = second.makeAsyncIterator()
        #expect(await secondIterator.next() == .exited(code: 3, reason: nil))
        terminal.disconnect(secondClient, now: 2000)
        #expect(terminal.info.active == false)
        #expect(terminal.idle(now: 2060, limit: 60))
    }
}
