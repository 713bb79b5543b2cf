public import AtollCore
import CRuntime
import Glibc
import Synchronization

/// Input for a process that runs while its caller talks to it (a terminal, a command waiting for
/// input, an interpreter): bytes for its stdin, the end of its stdin, signals for its process
/// group and terminal sizes, queued from any thread and carried out by the process's pump
/// thread, which a pipe wakes. Nothing here blocks.
public final class LiveInput: Sendable {
    struct Pending {
        var bytes: [UInt8] = []
        var closeRequested = false
        var signals: [Int32] = []
        var size: (rows: UInt16, columns: UInt16)?
        var finished = false
    }

    private let pending = Mutex(Pending())
    /// The pump polls `wakeRead`; every request writes a byte to `wakeWrite`.
    let wakeRead: OwnedFD
    private let wakeWrite: OwnedFD

    /// Bytes queued for stdin beyond this are refused: a client writing faster than the process
    /// reads gets an error, never an unbounded buffer in the daemon.
    public static let maximumQueued = 1 << 20

    public init() throws(AtollError) {
        var fds: [Int32] = [-1, -1]
        let rc = atoll_pipe_cloexec(&fds)
        guard rc == 0 else { throw SystemError.error("pipe2", errno: -rc) }
        wakeRead = OwnedFD(fds[0])
        wakeWrite = OwnedFD(fds[1])
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite.raw, &byte, 1)  // EAGAIN: a wake-up is pending already
    }

    /// Queues bytes for the process's stdin.
    public func write(_ bytes: [UInt8]) throws(AtollError) {
        let refusal: AtollError? = pending.withLock { state in
            if state.finished { return AtollError(.gone, "the process has ended") }
            if state.closeRequested { return AtollError(.conflict, "the process's input is closed") }
            if state.bytes.count + bytes.count > Self.maximumQueued {
                return AtollError(.resourceExhausted, "the process is not reading its input (\(Self.maximumQueued) bytes are waiting)")
            }
            state.bytes.append(contentsOf: bytes)
            return nil
        }
        if let refusal { throw refusal }
        wake()
    }

    /// Closes the process's stdin once what is queued has been written (the process reads EOF).
    public func closeInput() {
        pending.withLock { $0.closeRequested = true }
        wake()
    }

    /// Sends `signal` to the process's whole process group.
    public func signal(_ signal: Int32) {
        pending.withLock { $0.signals.append(signal) }
        wake()
    }

    /// Sets the size of the process's terminal (a process without one ignores it).
    public func resize(rows: UInt16, columns: UInt16) {
        pending.withLock { $0.size = (rows, columns) }
        wake()
    }

    /// Whether the process has ended.
    public var isFinished: Bool { pending.withLock { $0.finished } }

    /// The pump's side: everything queued since the last call.
    func take() -> Pending {
        var byte = [UInt8](repeating: 0, count: 64)
        while byte.withUnsafeMutableBytes({ Glibc.read(wakeRead.raw, $0.baseAddress, $0.count) }) > 0 {}
        return pending.withLock { state in
            let taken = state
            state.bytes = []
            state.signals = []
            state.size = nil
            return taken
        }
    }

    /// The pump's side: the process has ended; later requests are refused.
    func finish() {
        pending.withLock { $0.finished = true }
    }
}
