public import AtollCore
public import AtollSandbox
public import AtollWire

/// Atoll's live exec request (the CLI's WebSocket) in the runner's terms, for atolld and the
/// embedded CLI alike.
extension LiveExecRequest {
    /// The terminal the request asks for (`rows` and `cols` both), checked; nil for pipes.
    public func terminalSize() throws(AtollError) -> TerminalSize? {
        guard let rows, let cols else { return nil }
        return try TerminalSize(rows: rows, columns: cols)
    }

    /// The argv or shell command to run; nil when the request carries `code` (the runner stores
    /// it first: `SandboxManager.prepareCode`).
    public func execCommand() throws(AtollError) -> ExecRequest.Command? {
        if code != nil { return nil }
        if let argv { return .argv(argv) }
        if let command { return .shell(command) }
        throw AtollError(.invalidArgument, "argv, command or code is required")
    }
}
