import ArgumentParser
import AtollCore
import AtollDaytona
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollWire
import Dispatch
import Foundation
import Glibc
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket

/// A process run live from the CLI: output printed as it comes, the CLI's stdin forwarded, and
/// with a terminal, the CLI's terminal in raw mode, its size followed (SIGWINCH) and the remote
/// exit code as the CLI's own.

/// The CLI's own terminal.
enum LocalTerminal {
    /// The size of the terminal on stdin, if it is one.
    static func size() -> (rows: Int, columns: Int)? {
        var ws = winsize()
        guard ioctl(STDIN_FILENO, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_row > 0, ws.ws_col > 0 else { return nil }
        return (Int(ws.ws_row), Int(ws.ws_col))
    }

    /// Puts the terminal on stdin into raw mode (keys go to the remote terminal as typed, Ctrl-C
    /// included); returns how to restore it.
    static func makeRaw() -> (@Sendable () -> Void)? {
        guard isatty(STDIN_FILENO) == 1 else { return nil }
        var saved = termios()
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else { return nil }
        var raw = saved
        cfmakeraw(&raw)
        _ = tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        let original = saved
        return {
            var restore = original
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &restore)
        }
    }

    /// Sizes of the terminal each time it changes (SIGWINCH).
    static func sizeChanges() -> (AsyncStream<(rows: Int, columns: Int)>, any DispatchSourceSignal) {
        let (stream, continuation) = AsyncStream<(rows: Int, columns: Int)>.makeStream()
        signal(SIGWINCH, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGWINCH, queue: .global())
        source.setEventHandler { if let size = size() { continuation.yield(size) } }
        source.resume()
        return (stream, source)
    }

    /// The CLI's stdin as it arrives, then nil at EOF (read on a thread of its own).
    static func stdinChunks() -> AsyncStream<[UInt8]?> {
        let (stream, continuation) = AsyncStream<[UInt8]?>.makeStream()
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    continuation.yield(nil)
                    continuation.finish()
                    return
                }
                continuation.yield(Array(buffer[0..<n]))
            }
        }
        thread.start()
        return stream
    }
}

extension RemoteBackend {
    /// Runs `request` through atolld's live exec WebSocket (`/toolbox/{id}/process/exec-stream`).
    func execLive(
        _ id: String, _ request: LiveExecRequest, forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome {
        if request.user != nil {
            throw AtollError(.invalidArgument, "--user is not available through atolld (the API runs as the sandbox's user); use --embedded as root")
        }
        let url = baseURL.replacingOccurrences(of: "http://", with: "ws://") + toolbox(id) + "/process/exec-stream"
        var configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
        configuration.additionalHeaders[.authorization] = "Bearer \(apiKey)"
        let requestText = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
        let outcome = OutcomeBox()
        let terminal = request.rows != nil
        let close: WebSocketCloseFrame?
        do {
            close = try await WebSocketClient.connect(url: url, configuration: configuration, logger: Logger(label: "atoll")) { inbound, outbound, _ in
                try await outbound.write(.text(requestText))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // Stdin and window sizes go out while the server's messages come in; those
                    // end the exchange (the child tasks are cancelled then).
                    group.addTask {
                        if forwardStdin {
                            for await chunk in LocalTerminal.stdinChunks() {
                                guard let chunk else { break }
                                try await outbound.write(.binary(ByteBuffer(bytes: chunk)))
                            }
                        }
                        if !terminal { try await outbound.write(.text(#"{"type":"eof"}"#)) }
                    }
                    if terminal {
                        group.addTask {
                            let (sizes, source) = LocalTerminal.sizeChanges()
                            defer { source.cancel() }
                            for await size in sizes {
                                try await outbound.write(.text("{\"type\":\"resize\",\"rows\":\(size.rows),\"cols\":\(size.columns)}"))
                            }
                        }
                    }
                    for try await message in inbound.messages(maxSize: 4 << 20) {
                        switch message {
                        case .binary(let buffer):
                            let bytes = Array(buffer.readableBytesView)
                            guard let first = bytes.first else { continue }
                            onOutput(first == 2 ? .stderr : .stdout, Array(bytes.dropFirst()))
                        case .text(let text):
                            if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], object["type"] as? String == "exit" {
                                outcome.set(
                                    RunOutcome(exitCode: Int32(object["exitCode"] as? Int ?? 1), timedOut: object["timedOut"] as? Bool ?? false))
                            }
                        }
                    }
                    group.cancelAll()
                }
            }
        } catch let error as AtollError {
            throw error
        } catch {
            throw AtollError(.unavailable, "cannot reach atolld at \(baseURL) for a live exec: \(error)")
        }
        if let result = outcome.value { return result }
        if let close, close.closeCode != .normalClosure {
            let status: Int
            if case .unknown(let code) = close.closeCode, code >= 4000 { status = Int(code) - 4000 } else { status = 500 }
            throw AtollError(Self.code(forStatus: status), close.reason ?? "atolld closed the live exec (\(close.closeCode))")
        }
        throw AtollError(.internal, "atolld ended the live exec without an exit code")
    }
}

extension EmbeddedBackend {
    /// Runs `request` in this process's runner, live.
    func execLive(
        _ id: String, _ request: LiveExecRequest, forwardStdin: Bool, onOutput: @escaping @Sendable (OutputChannel, [UInt8]) -> Void
    ) async throws -> RunOutcome {
        guard let command = try request.execCommand() else {
            throw AtollError(.invalidArgument, "code runs through code-run in the embedded runner")
        }
        let input = try LiveInput()
        let terminal = try request.terminalSize()
        let process = try await manager.startLive(
            id, ExecRequest(command: command, env: request.env ?? [:], cwd: request.cwd, user: request.user, timeout: request.timeout),
            terminal: terminal, input: input, onOutput: onOutput)
        let feeder = Task {
            if forwardStdin {
                for await chunk in LocalTerminal.stdinChunks() {
                    guard let chunk else { break }
                    try? input.write(chunk)
                }
            }
            if terminal == nil { input.closeInput() }
        }
        defer { feeder.cancel() }
        var watcher: (any DispatchSourceSignal)?
        if terminal != nil {
            let (sizes, source) = LocalTerminal.sizeChanges()
            watcher = source
            Task { for await size in sizes { input.resize(rows: UInt16(size.rows), columns: UInt16(size.columns)) } }
        }
        defer { watcher?.cancel() }
        let result = try await process.wait().get()
        return RunOutcome(exitCode: result.termination.shellStatus, timedOut: result.timedOut)
    }
}

/// The exit a live exec reported (set from the WebSocket handler).
final class OutcomeBox: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var stored: RunOutcome?

    func set(_ outcome: RunOutcome) { lock.withLock { stored = outcome } }
    var value: RunOutcome? { lock.withLock { stored } }
}

/// `atoll logs`
struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the output of a command run in a session (through atolld; sessions live there).",
        discussion: "atoll logs my-box my-session 3f0c… --follow   (until the command ends)")

    @OptionGroup var runtime: RuntimeOptions
    @Argument(help: "Sandbox id or name.") var sandbox: String
    @Argument(help: "Session id.") var session: String
    @Argument(help: "Command id.") var command: String
    @Flag(name: [.customShort("f"), .long], help: "Print output as it is written, until the command ends.") var follow = false

    func run() async throws {
        try await withBackend(runtime) { backend in
            guard let remote = backend as? RemoteBackend else {
                throw AtollError(.invalidArgument, "sessions live in atolld: start it (or give --url) to read their logs")
            }
            let path = remote.toolbox(sandbox) + "/process/session/\(RemoteBackend.escape(session))/command/\(RemoteBackend.escape(command))/logs"
            guard follow else {
                let logs = try await remote.decode(SessionLogsBody.self, "GET", path)
                OutputWriter.write(.stdout, Array(logs.stdout.utf8))
                OutputWriter.write(.stderr, Array(logs.stderr.utf8))
                return
            }
            var configuration = WebSocketClientConfiguration(maxFrameSize: 4 << 20)
            configuration.additionalHeaders[.authorization] = "Bearer \(remote.apiKey)"
            let url = remote.baseURL.replacingOccurrences(of: "http://", with: "ws://") + path + "?follow=true"
            let close = try await WebSocketClient.connect(url: url, configuration: configuration, logger: Logger(label: "atoll")) { inbound, _, _ in
                // Daytona's framing: 01 01 01 before stdout, 02 02 02 before stderr.
                for try await message in inbound.messages(maxSize: 4 << 20) {
                    guard case .binary(let buffer) = message else { continue }
                    let bytes = Array(buffer.readableBytesView)
                    guard bytes.count >= 3 else { continue }
                    OutputWriter.write(bytes[0] == 2 ? .stderr : .stdout, Array(bytes.dropFirst(3)))
                }
            }
            if let close, close.closeCode != .normalClosure {
                throw AtollError(.conflict, close.reason ?? "atolld stopped following the logs (\(close.closeCode))")
            }
        }
    }

    struct SessionLogsBody: Decodable {
        var stdout: String
        var stderr: String
    }
}
