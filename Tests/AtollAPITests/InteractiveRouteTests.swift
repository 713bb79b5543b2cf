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
}
