import AtollCore
public import AtollLinux
public import CRuntime
public import Foundation
import Glibc

/// A file or directory inside a sandbox, with ids and names as the sandbox sees them.
public struct FileEntry: Sendable, Hashable {
    public var name: String
    /// Absolute path inside the sandbox.
    public var path: String
    public var isDirectory: Bool
    public var isSymlink: Bool
    public var size: UInt64
    /// `st_mode` (type and permission bits).
    public var mode: UInt32
    /// Ids inside the sandbox (65534 for an id its user namespace does not map).
    public var uid: UInt32
    public var gid: UInt32
    public var owner: String
    public var group: String
    public var modified: Date
    public var symlinkTarget: String?

    /// Permission bits as four octal digits, e.g. `0644`.
    public var permissions: String { String(format: "%04o", mode & 0o7777) }

    /// `ls -l` style mode string, e.g. `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`.
    public var modeString: String {
        let type: Character
        switch mode & UInt32(S_IFMT) {
        case UInt32(S_IFDIR): type = "d"
        case UInt32(S_IFLNK): type = "l"
        case UInt32(S_IFCHR): type = "c"
        case UInt32(S_IFBLK): type = "b"
        case UInt32(S_IFIFO): type = "p"
        case UInt32(S_IFSOCK): type = "s"
        default: type = "-"
        }
        var s = String(type)
        let bits: [(UInt32, Character)] = [
            (0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"), (0o004, "r"), (0o002, "w"), (0o001, "x"),
        ]
        for (i, (bit, char)) in bits.enumerated() {
            var c: Character = mode & bit != 0 ? char : "-"
            if i == 2 && mode & 0o4000 != 0 { c = c == "x" ? "s" : "S" }
            if i == 5 && mode & 0o2000 != 0 { c = c == "x" ? "s" : "S" }
            if i == 8 && mode & 0o1000 != 0 { c = c == "x" ? "t" : "T" }
            s.append(c)
        }
        return s
    }
}

/// A line of a file that matched a content search.
public struct FileMatch: Sendable, Hashable {
    public var file: String
    public var line: Int
    public var content: String
}

/// What a listing, a search or a content search found.
public struct FileListing<Item: Sendable>: Sendable {
    public var items: [Item]
    /// A bound (entries, depth, results) cut it short.
    public var truncated: Bool
    /// The home directory relative paths were resolved against.
    public var home: String
}

/// An account of the sandbox's `/etc/passwd`.
public struct SandboxAccount: Sendable, Hashable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String
    public var shell: String
}

/// The files of a running sandbox, reached only through its agent: every operation is carried out
/// inside the sandbox, with the credentials of the sandbox's root, so the kernel resolves every
/// path and symlink in the sandbox's own root and checks every permission as it would for the
/// sandbox's code (`/proc` and `/sys` included). Nothing here opens a sandbox file with the host's
/// privileges. Operations act with root's rights inside the sandbox (like Daytona's toolbox
/// daemon); what they create belongs to `user`, whose home relative paths start at.
///
/// Every method blocks until the agent answers (each wait has a deadline): call them from the
/// runtime's work pool, never from Swift's cooperative threads.
public struct SandboxFiles: Sendable {
    /// The sandbox's directory on the host, where its agent's socket is.
    let directory: String
    public let sandbox: String
    /// Owner of what is created, and whose home relative paths start at.
    public let user: String

    /// How long the agent may take to send its next message.
    public static let replyTimeout = 60.0
    /// How long a transfer may stall (no byte moving either way).
    public static let transferStallTimeout = 60.0
    /// Results a listing, search or content search returns at most.
    public static let resultLimit: Int64 = 100_000

    public init(directory: String, sandbox: String, user: String) {
        self.directory = directory
        self.sandbox = sandbox
        self.user = user
    }

    // MARK: - Requests

    /// Connects and sends a file request; the caller reads the replies.
    func request(
        _ op: atoll_agent_file_op, _ path: String, second: String = "", third: String = "", flags: Int32 = 0,
        mode: Int64 = -1, limit: Int64 = -1, descriptor: Int32? = nil
    ) throws -> AgentConnection {
        for text in [path, second, third] where text.utf8.contains(0) {
            throw AtollError(.invalidArgument, "invalid path \"\(text.prefix(64))\": it contains a NUL byte")
        }
        guard path.utf8.count <= 4096 else { throw AtollError(.invalidArgument, "path is longer than 4096 bytes") }
        let connection = try AgentConnection.connect(directory: directory, sandbox: sandbox)
        try connection.send(
            AgentMessage(.file, numbers: [Int64(op.rawValue), Int64(flags), mode, limit], strings: [user, path, second, third]),
            descriptors: descriptor.map { [$0] } ?? [])
        return connection
    }

    /// The next reply; an agent `ERROR` is thrown as the error it describes.
    static func next(_ connection: AgentConnection, _ waitingFor: String) throws -> AgentMessage {
        guard let message = try connection.receive(timeout: replyTimeout, waitingFor: waitingFor) else {
            throw AtollError(.conflict, "sandbox \(connection.sandbox)'s agent ended without answering (\(waitingFor))")
        }
        switch message.kind {
        case .error: throw AgentFailure.error(message)
        case .exit:  // PID 1 reaped the agent before it answered (killed inside the sandbox, say)
            throw AtollError(.conflict, "sandbox \(connection.sandbox)'s agent ended without answering (\(waitingFor)): \(message.endDescription)")
        default: return message
        }
    }

    /// Runs a request whose answer is one message of `kind`.
    func single(
        _ op: atoll_agent_file_op, _ path: String, expecting kind: AgentMessage.Kind, second: String = "", third: String = "",
        flags: Int32 = 0, mode: Int64 = -1
    ) throws -> AgentMessage {
        let connection = try request(op, path, second: second, third: third, flags: flags, mode: mode)
        defer { connection.close() }
        let message = try Self.next(connection, "\(op.name) \(path.prefix(200))")
        guard message.kind == kind else { throw Self.unexpected(message, connection) }
        return message
    }

    static func unexpected(_ message: AgentMessage, _ connection: AgentConnection) -> AtollError {
        AtollError(.internal, "sandbox \(connection.sandbox)'s agent sent an unexpected \(message.kind) message")
    }

    static func entries(_ message: AgentMessage) -> [FileEntry] {
        let count = min(message.numbers.count / Int(ATOLL_AGENT_ENTRY_NUMBERS), message.strings.count / Int(ATOLL_AGENT_ENTRY_STRINGS))
        return (0..<count).map { i in
            let n = Array(message.numbers[(i * 7)..<(i * 7 + 7)])
            let s = Array(message.strings[(i * 5)..<(i * 5 + 5)])
            let mode = UInt32(truncatingIfNeeded: n[0])
            func id(_ value: Int64) -> UInt32 { (0..<65536).contains(value) ? UInt32(value) : 65534 }
            return FileEntry(
                name: s[0], path: s[1], isDirectory: mode & UInt32(S_IFMT) == UInt32(S_IFDIR),
                isSymlink: mode & UInt32(S_IFMT) == UInt32(S_IFLNK), size: UInt64(max(0, n[3])), mode: mode, uid: id(n[1]),
                gid: id(n[2]), owner: s[3], group: s[4], modified: Date(timeIntervalSince1970: Double(n[4]) + Double(n[5]) / 1e9),
                symlinkTarget: mode & UInt32(S_IFMT) == UInt32(S_IFLNK) ? s[2] : nil)
        }
    }

    static func entry(_ message: AgentMessage, _ connection: AgentConnection) throws -> FileEntry {
        guard message.kind == .entry, let entry = entries(message).first else { throw unexpected(message, connection) }
        return entry
    }

    // MARK: - Reading

    /// The sandbox user's account (name, ids, home, shell).
    public func account() throws -> SandboxAccount {
        let m = try single(ATOLL_FILE_ACCOUNT, "", expecting: .account)
        return SandboxAccount(
            name: m.string(0), uid: UInt32(truncatingIfNeeded: m.number(0)), gid: UInt32(truncatingIfNeeded: m.number(1)),
            home: m.string(1), shell: m.string(2))
    }

    /// The home directory relative paths are resolved against (Daytona's work dir).
    public func home() throws -> String { try account().home }

    /// Metadata of `path` (a symlink itself, not its target).
    public func info(_ path: String) throws -> FileEntry {
        let connection = try request(ATOLL_FILE_STAT, path)
        defer { connection.close() }
        return try Self.entry(try Self.next(connection, "stat \(path.prefix(200))"), connection)
    }

    /// Whether `path` exists (without following a final symlink).
    public func exists(_ path: String) throws -> Bool {
        do {
            _ = try info(path)
            return true
        } catch let error as AtollError where error.code == .notFound {
            return false
        }
    }

    /// The entries of a directory, sorted by name.
    public func list(_ path: String, limit: Int64 = resultLimit) throws -> FileListing<FileEntry> {
        let connection = try request(ATOLL_FILE_LIST, path, limit: limit)
        defer { connection.close() }
        var items: [FileEntry] = []
        while true {
            let message = try Self.next(connection, "list \(path.prefix(200))")
            switch message.kind {
            case .entry: items += Self.entries(message)
            case .done:
                return FileListing(items: items.sorted { $0.name < $1.name }, truncated: message.number(1) != 0, home: message.string(0))
            default: throw Self.unexpected(message, connection)
            }
        }
    }

    /// The contents of a regular file of at most `limit` bytes (a symlink is followed inside the
    /// sandbox).
    public func read(_ path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        let download = try openRead(path, limit: limit)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(min(download.entry.size, UInt64(limit))))
        while let chunk = try download.next() { bytes += chunk }
        try download.finish()
        return bytes
    }

    /// Starts streaming a regular file (at most `limit` bytes) out of the sandbox.
    public func openRead(_ path: String, limit: Int = 1 << 30) throws -> FileDownload {
        let pipe = try KernelPipe.make()
        let connection = try request(ATOLL_FILE_READ, path, limit: Int64(limit), descriptor: pipe.write.raw)
        pipe.write.close()  // the agent holds the only write end: EOF when it is done
        do {
            let entry = try Self.entry(try Self.next(connection, "read \(path.prefix(200))"), connection)
            return FileDownload(entry: entry, connection: connection, pipe: pipe.read, path: path)
        } catch {
            connection.close()
            throw error
        }
    }

    // MARK: - Writing

    /// Writes `bytes` to `path`, replacing an existing file (a symlink there is followed inside
    /// the sandbox) and creating missing parent directories (owned by the user). The new content
    /// replaces the old in one rename, once every byte arrived: a failure leaves the target as it
    /// was (parent directories made for it stay).
    @discardableResult
    public func write(_ path: String, bytes: [UInt8], mode: mode_t = 0o644, exclusive: Bool = false) throws -> FileEntry {
        let upload = try openWrite(path, mode: mode, exclusive: exclusive)
        do {
            try upload.write(bytes)
        } catch {
            upload.cancel()
            throw error
        }
        return try upload.finish()
    }

    /// Starts streaming a file into the sandbox (see `write`).
    public func openWrite(_ path: String, mode: mode_t = 0o644, exclusive: Bool = false) throws -> FileUpload {
        let pipe = try KernelPipe.make()
        var flags = Int32(ATOLL_FILE_PARENTS.rawValue)
        if exclusive { flags |= Int32(ATOLL_FILE_EXCLUSIVE.rawValue) }
        let connection = try request(ATOLL_FILE_WRITE, path, flags: flags, mode: Int64(mode), descriptor: pipe.read.raw)
        pipe.read.close()
        return FileUpload(connection: connection, pipe: pipe.write, path: path)
    }

    /// Makes `path` and its missing parents (like `mkdir -p`); new ones get `mode` and the user.
    @discardableResult
    public func createDirectory(_ path: String, mode: mode_t = 0o755) throws -> FileEntry {
        let connection = try request(ATOLL_FILE_MKDIR, path, flags: Int32(ATOLL_FILE_PARENTS.rawValue), mode: Int64(mode))
        defer { connection.close() }
        return try Self.entry(try Self.next(connection, "mkdir \(path.prefix(200))"), connection)
    }

    /// Deletes a file, a symlink (not its target) or, with `recursive`, a directory tree.
    public func delete(_ path: String, recursive: Bool, missingOK: Bool = false) throws {
        var flags: Int32 = 0
        if recursive { flags |= Int32(ATOLL_FILE_RECURSIVE.rawValue) }
        if missingOK { flags |= Int32(ATOLL_FILE_MISSING_OK.rawValue) }
        _ = try single(ATOLL_FILE_DELETE, path, expecting: .done, flags: flags)
    }

    /// Moves (renames) `source` to `destination`. Across filesystems (e.g. from `/tmp`, which is
    /// its own mount) a regular file is copied and the original removed.
    public func move(_ source: String, to destination: String) throws {
        _ = try single(ATOLL_FILE_MOVE, source, expecting: .done, second: destination)
    }

    /// Changes mode (octal string such as "755"), owner and group (names or numbers inside).
    @discardableResult
    public func setPermissions(_ path: String, mode: String?, owner: String?, group: String?) throws -> FileEntry {
        var value: Int64 = -1
        if let mode {
            guard let parsed = UInt32(mode, radix: 8), parsed <= 0o7777 else {
                throw AtollError(.invalidArgument, "mode must be octal permissions such as 644 or 0755, got \"\(mode.prefix(16))\"")
            }
            value = Int64(parsed)
        }
        let connection = try request(ATOLL_FILE_SETPERM, path, second: owner ?? "", third: group ?? "", mode: value)
        defer { connection.close() }
        return try Self.entry(try Self.next(connection, "set permissions of \(path.prefix(200))"), connection)
    }

    // MARK: - Searching

    /// Paths below `path` whose name matches the glob `pattern` (`*.py`, `test_?.txt`, `[ab]*`),
    /// sorted. The walk does not follow symlinks nor enter /proc, /sys and /dev, and stops at its
    /// bounds (`truncated`).
    public func search(_ path: String, pattern: String) throws -> FileListing<String> {
        guard !pattern.isEmpty else { throw AtollError(.invalidArgument, "pattern is empty") }
        let connection = try request(ATOLL_FILE_SEARCH, path, second: pattern, limit: Self.resultLimit)
        defer { connection.close() }
        var paths: [String] = []
        while true {
            let message = try Self.next(connection, "search \(path.prefix(200))")
            switch message.kind {
            case .path: paths += message.strings
            case .done: return FileListing(items: paths.sorted(), truncated: message.number(1) != 0, home: message.string(0))
            default: throw Self.unexpected(message, connection)
            }
        }
    }

    /// Lines of regular files below `path` (or of the file `path`) that contain `pattern`.
    public func find(_ path: String, pattern: String) throws -> FileListing<FileMatch> {
        guard !pattern.isEmpty else { throw AtollError(.invalidArgument, "pattern is empty") }
        let connection = try request(ATOLL_FILE_FIND, path, second: pattern, limit: Self.resultLimit)
        defer { connection.close() }
        var matches: [FileMatch] = []
        while true {
            let message = try Self.next(connection, "find in \(path.prefix(200))")
            switch message.kind {
            case .match:
                for (i, line) in message.numbers.enumerated() where 2 * i + 1 < message.strings.count {
                    matches.append(FileMatch(file: message.strings[2 * i], line: Int(line), content: message.strings[2 * i + 1]))
                }
            case .done: return FileListing(items: matches, truncated: message.number(1) != 0, home: message.string(0))
            default: throw Self.unexpected(message, connection)
            }
        }
    }

    // MARK: - FIFOs (sessions)

    /// Makes a FIFO owned by the user.
    public func makeFifo(_ path: String, mode: mode_t = 0o600) throws {
        _ = try single(ATOLL_FILE_MKFIFO, path, expecting: .done, mode: Int64(mode))
    }

    /// Writes `text` to an existing FIFO in one write, without blocking (keep it under PIPE_BUF
    /// so that it arrives whole).
    public func writeToFifo(_ path: String, _ text: String) throws {
        _ = try single(ATOLL_FILE_FIFO_WRITE, path, expecting: .done, second: text)
    }

    /// Opens an existing FIFO for writing and hands over the descriptor (checked to be a FIFO:
    /// it comes from inside the sandbox), non-blocking. It is opened read-write, so it never
    /// waits for a reader; readers see EOF once it (and every other writer) is closed.
    /// With `create`, the FIFO is made first (owned by the user, `create` its mode).
    public func openFifo(_ path: String, create: mode_t? = nil) throws -> OwnedFD {
        let descriptor = try openDescriptor(ATOLL_FILE_FIFO_OPEN, path, mode: create.map { Int64($0) } ?? -1, expecting: S_IFIFO, what: "a FIFO")
        _ = fcntl(descriptor.raw, F_SETFL, fcntl(descriptor.raw, F_GETFL) | O_NONBLOCK)
        return descriptor
    }

    /// Opens an existing regular file for reading and hands over the descriptor (checked to be a
    /// regular file): following a growing file with `pread`, without an agent per read.
    public func openForReading(_ path: String) throws -> OwnedFD {
        try openDescriptor(ATOLL_FILE_OPEN_READ, path, mode: -1, expecting: S_IFREG, what: "a regular file")
    }

    /// A request whose answer is `DONE` with a descriptor of the type `expecting` (S_IFMT bits).
    func openDescriptor(_ op: atoll_agent_file_op, _ path: String, mode: Int64, expecting: mode_t, what: String) throws -> OwnedFD {
        let connection = try request(op, path, mode: mode)
        defer { connection.close() }
        guard let (message, descriptor) = try connection.receiveWithDescriptor(timeout: Self.replyTimeout, waitingFor: "open \(path.prefix(200))") else {
            throw AtollError(.conflict, "sandbox \(sandbox)'s agent ended without answering (open \(path.prefix(200)))")
        }
        guard message.kind == .done, let descriptor else {
            descriptor?.close()
            if message.kind == .error { throw AgentFailure.error(message) }
            throw Self.unexpected(message, connection)
        }
        var st = stat()
        guard fstat(descriptor.raw, &st) == 0, st.st_mode & S_IFMT == expecting else {
            descriptor.close()
            throw AtollError(.internal, "sandbox \(sandbox)'s agent sent a descriptor that is not \(what) for \(path.prefix(200))")
        }
        return descriptor
    }
}

extension atoll_agent_file_op {
    var name: String {
        switch self {
        case ATOLL_FILE_STAT: return "stat"
        case ATOLL_FILE_LIST: return "list"
        case ATOLL_FILE_READ: return "read"
        case ATOLL_FILE_WRITE: return "write"
        case ATOLL_FILE_MKDIR: return "mkdir"
        case ATOLL_FILE_DELETE: return "delete"
        case ATOLL_FILE_MOVE: return "move"
        case ATOLL_FILE_SETPERM: return "set permissions of"
        case ATOLL_FILE_SEARCH: return "search"
        case ATOLL_FILE_FIND: return "find in"
        case ATOLL_FILE_MKFIFO: return "mkfifo"
        case ATOLL_FILE_FIFO_WRITE: return "write to"
        case ATOLL_FILE_FIFO_OPEN, ATOLL_FILE_OPEN_READ: return "open"
        default: return "account"
        }
    }
}

/// A file streaming out of a sandbox: `next()` until nil, then `finish()`. Blocking, with a
/// deadline on every wait; close it (or let it go) to abandon the transfer.
public final class FileDownload: @unchecked Sendable {
    // @unchecked: one consumer drives a transfer from start to end.
    public let entry: FileEntry
    let connection: AgentConnection
    let pipe: OwnedFD
    let path: String
    var received: Int64 = 0

    init(entry: FileEntry, connection: AgentConnection, pipe: OwnedFD, path: String) {
        self.entry = entry
        self.connection = connection
        self.pipe = pipe
        self.path = path
        _ = fcntl(pipe.raw, F_SETFL, fcntl(pipe.raw, F_GETFL) | O_NONBLOCK)
    }

    /// What a read without waiting found.
    public enum Available: Sendable {
        case bytes([UInt8])
        case nothingYet
        case end
    }

    /// Reads what is there now (at most `maximum` bytes), without waiting.
    public func readAvailable(maximum: Int = 256 << 10) throws -> Available {
        var buffer = [UInt8](repeating: 0, count: maximum)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(pipe.raw, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return .nothingYet }
            guard n >= 0 else { throw SystemError.last("read", "pipe from sandbox \(connection.sandbox)") }
            if n == 0 { return .end }
            received += Int64(n)
            buffer.removeLast(maximum - n)
            return .bytes(buffer)
        }
    }

    /// Waits until there is something to read (or the end), at most the stall timeout.
    public func waitReadable() throws {
        while true {
            var p = pollfd(fd: pipe.raw, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(SandboxFiles.transferStallTimeout * 1000))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else {
                throw AtollError(
                    .timeout, "reading \(path.prefix(200)) from sandbox \(connection.sandbox) stalled for \(Int(SandboxFiles.transferStallTimeout)) s")
            }
            return
        }
    }

    /// The next chunk (at most `maximum` bytes), or nil at the end of the file; waits for it.
    public func next(maximum: Int = 256 << 10) throws -> [UInt8]? {
        while true {
            switch try readAvailable(maximum: maximum) {
            case .bytes(let bytes): return bytes
            case .end: return nil
            case .nothingYet: try waitReadable()
            }
        }
    }

    /// Confirms that the agent sent the whole file (a read error inside is reported here).
    public func finish() throws {
        defer { close() }
        let message = try SandboxFiles.next(connection, "the end of \(path.prefix(200))")
        guard message.kind == .done else { throw SandboxFiles.unexpected(message, connection) }
        guard message.number(0) == received else {
            throw AtollError(.system, "\(path): \(received) bytes arrived of the \(message.number(0)) the sandbox sent")
        }
    }

    public func close() {
        pipe.close()
        connection.close()
    }

    deinit { close() }
}

/// A file streaming into a sandbox: `write` its bytes, then `finish()` (or `cancel()`: the target
/// is then left as it was). Blocking, with a deadline on every wait.
public final class FileUpload: @unchecked Sendable {
    // @unchecked: one producer drives a transfer from start to end.
    let connection: AgentConnection
    let pipe: OwnedFD
    let path: String
    public private(set) var written: Int64 = 0

    init(connection: AgentConnection, pipe: OwnedFD, path: String) {
        self.connection = connection
        self.pipe = pipe
        self.path = path
        _ = fcntl(pipe.raw, F_SETFL, fcntl(pipe.raw, F_GETFL) | O_NONBLOCK)
    }

    /// Writes all of `bytes` (waiting while the sandbox catches up).
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try writeAvailable(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            offset += n
            if n == 0 { try waitWritable() }
        }
    }

    /// Writes as much of `bytes` as the pipe takes now; returns how much (0: it is full).
    public func writeAvailable(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = Glibc.write(pipe.raw, bytes.baseAddress!, bytes.count)
            if n >= 0 {
                written += Int64(n)
                return n
            }
            if errno == EINTR { continue }
            if errno == EAGAIN { return 0 }
            // EPIPE: the agent stopped reading, which it does only after a failure it reports.
            try failure()
        }
    }

    /// Waits until the pipe takes more bytes, at most the stall timeout.
    public func waitWritable() throws {
        while true {
            var p = pollfd(fd: pipe.raw, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&p, 1, Int32(SandboxFiles.transferStallTimeout * 1000))
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                throw AtollError(
                    .timeout, "writing \(path.prefix(200)) into sandbox \(connection.sandbox) stalled for \(Int(SandboxFiles.transferStallTimeout)) s")
            }
            return
        }
    }

    /// The error the agent reported, thrown.
    func failure() throws -> Never {
        let reason = (try? connection.receive(timeout: 5, waitingFor: "the reason an upload failed")) ?? nil
        pipe.close()
        connection.close()
        if let reason, reason.kind == .error { throw AgentFailure.error(reason) }
        throw AtollError(.conflict, "\(path): the sandbox stopped taking the upload (it was stopped?)")
    }

    /// Ends the data, confirms the byte count and waits for the file to be in place.
    @discardableResult
    public func finish() throws -> FileEntry {
        pipe.close()
        defer { connection.close() }
        do {
            try connection.send(AgentMessage(.commit, numbers: [written]))
        } catch {
            try failure()  // the agent gave up before the end: its reason is waiting on the socket
        }
        return try SandboxFiles.entry(try SandboxFiles.next(connection, "writing \(path.prefix(200))"), connection)
    }

    /// Abandons the upload: the agent removes what it wrote and the target stays as it was.
    public func cancel() {
        pipe.close()
        connection.close()
    }

    deinit { cancel() }
}
