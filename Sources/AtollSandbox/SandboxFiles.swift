import AtollCore
import AtollLinux
import CRuntime
import Foundation
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
        let bits: [(UInt32, Character)] = [(0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"), (0o004, "r"), (0o002, "w"), (0o001, "x")]
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

/// The files of a running sandbox, reached from the host without ever leaving the sandbox's
/// root: every path is resolved with `openat2(RESOLVE_IN_ROOT)` from PID 1's root, and every
/// step below a resolved directory is fd-relative with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, so
/// `..`, absolute symlinks and symlinks swapped in during a call cannot reach a host file.
/// Operations act with root's rights inside the sandbox (like Daytona's toolbox daemon); new
/// files and directories belong to the sandbox's user.
public final class SandboxFiles: @unchecked Sendable {
    // @unchecked: immutable after init; the root descriptor is only read.
    let root: SandboxRoot
    let ids: IDRange
    let accounts: PasswdDatabase
    /// Ids (inside) that new files get.
    public let owner: SandboxAccount

    /// Largest file a content search reads, and how many entries a walk visits at most.
    public static let searchFileLimit = 8 << 20
    public static let walkLimit = 200_000
    /// Pseudo filesystems a walk from `/` does not enter.
    static let skippedRoots: Set<String> = ["/proc", "/sys", "/dev"]

    init(root: SandboxRoot, ids: IDRange, accounts: PasswdDatabase, owner: SandboxAccount) {
        self.root = root
        self.ids = ids
        self.accounts = accounts
        self.owner = owner
    }

    deinit { root.close() }

    /// The home directory relative paths are resolved against (Daytona's work dir).
    public var home: String { owner.home }

    // MARK: - Paths

    /// An absolute, normalised path inside the sandbox. Relative paths start at the user's home;
    /// `..` cannot climb above `/` (resolution happens inside the root anyway).
    public func absolute(_ path: String) throws -> String {
        guard !path.isEmpty else { throw AtollError(.invalidArgument, "path is empty") }
        guard path.utf8.count <= 4096, !path.utf8.contains(0) else {
            throw AtollError(.invalidArgument, "invalid path \"\(path.prefix(64))\": too long or contains a NUL byte")
        }
        let joined = path.hasPrefix("/") ? path : home + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func split(_ absolute: String) -> (parent: String, name: String) {
        guard let slash = absolute.lastIndex(of: "/"), absolute != "/" else { return ("/", "") }
        let parent = String(absolute[..<slash])
        return (parent.isEmpty ? "/" : parent, String(absolute[absolute.index(after: slash)...]))
    }

    func openDirectory(_ absolute: String) throws -> OwnedFD {
        do {
            return try root.open(absolute, flags: O_RDONLY | O_DIRECTORY)
        } catch let error as AtollError where error.message.contains("ENOTDIR") {
            throw AtollError(.invalidArgument, "\(absolute) is not a directory")
        }
    }

    /// The directory holding `path` (resolved inside the root) and the last component.
    func parent(of absolute: String) throws -> (dir: OwnedFD, name: String) {
        let (parent, name) = Self.split(absolute)
        guard !name.isEmpty else { throw AtollError(.invalidArgument, "the sandbox's root directory cannot be used here") }
        return (try openDirectory(parent), name)
    }

    func entry(dir: Int32, name: String, path: String) throws -> FileEntry {
        var st = stat()
        guard fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw Self.error("fstatat", path) }
        return entry(st, name: name, path: path, linkTarget: (st.st_mode & S_IFMT) == S_IFLNK ? readLink(dir: dir, name: name) : nil)
    }

    func entry(_ st: stat, name: String, path: String, linkTarget: String?) -> FileEntry {
        let uid = ids.contains(hostID: st.st_uid) ? st.st_uid - ids.base : 65534
        let gid = ids.contains(hostID: st.st_gid) ? st.st_gid - ids.base : 65534
        let seconds = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        return FileEntry(
            name: name, path: path, isDirectory: (st.st_mode & S_IFMT) == S_IFDIR, isSymlink: (st.st_mode & S_IFMT) == S_IFLNK,
            size: UInt64(st.st_size), mode: st.st_mode, uid: uid, gid: gid,
            owner: accounts.accounts.first { $0.uid == uid }?.name ?? String(uid),
            group: accounts.groupName(gid) ?? String(gid), modified: Date(timeIntervalSince1970: seconds), symlinkTarget: linkTarget
        )
    }

    func readLink(dir: Int32, name: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlinkat(dir, name, &buffer, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An error for a failed call on a sandbox path (the message names the path inside).
    static func error(_ call: String, _ path: String, errno err: Int32 = errno) -> AtollError {
        switch err {
        case ENOENT: return AtollError(.notFound, "\(path): no such file or directory")
        case EACCES, EPERM: return AtollError(.forbidden, "\(path): permission denied (\(call))")
        case EEXIST: return AtollError(.conflict, "\(path) already exists")
        case ENOTEMPTY: return AtollError(.conflict, "\(path) is a directory that is not empty (use recursive)")
        case ELOOP: return AtollError(.invalidArgument, "\(path) is a symbolic link (\(call) does not follow it)")
        case ENOTDIR: return AtollError(.invalidArgument, "\(path) is not a directory (or a symbolic link to one inside the sandbox)")
        case ENOSPC, EDQUOT: return AtollError(.resourceExhausted, "\(path): the sandbox's disk is full")
        case EBUSY: return AtollError(.conflict, "\(path) is busy (a mount point?)")
        case EROFS: return AtollError(.forbidden, "\(path) is on a read-only filesystem")
        default: return SystemError.error(call, path, errno: err)
        }
    }

    // MARK: - Reading

    /// Metadata of `path` (a symlink itself, not its target).
    public func info(_ path: String) throws -> FileEntry {
        let abs = try absolute(path)
        if abs == "/" {
            var st = stat()
            guard fstat(root.fd.raw, &st) == 0 else { throw Self.error("fstat", abs) }
            return entry(st, name: "/", path: "/", linkTarget: nil)
        }
        let (dir, name) = try parent(of: abs)
        return try entry(dir: dir.raw, name: name, path: abs)
    }

    /// The entries of a directory, sorted by name.
    public func list(_ path: String) throws -> [FileEntry] {
        let abs = try absolute(path)
        let dir = try openDirectory(abs)
        return try names(in: dir).map { name in
            try entry(dir: dir.raw, name: name, path: abs == "/" ? "/\(name)" : "\(abs)/\(name)")
        }.sorted { $0.name < $1.name }
    }

    /// Names in an open directory (not `.` and `..`).
    func names(in dir: OwnedFD) throws -> [String] {
        let copy = fcntl(dir.raw, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw SystemError.last("fcntl(F_DUPFD_CLOEXEC)") }
        guard let stream = fdopendir(copy) else {
            let error = SystemError.last("fdopendir")
            Glibc.close(copy)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let e = readdir(stream) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The contents of a regular file (not following a final symlink out of the sandbox — the
    /// resolution is inside the root either way).
    public func read(_ path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        let abs = try absolute(path)
        do {
            return try root.read(abs, limit: limit)
        } catch let error as AtollError where error.code == .notFound {
            throw AtollError(.notFound, "\(abs): no such file or directory")
        }
    }

    // MARK: - Writing

    /// Writes `bytes` to `path`, replacing an existing file and creating missing parent
    /// directories (owned by the sandbox's user). A symlink at `path` is followed, inside the
    /// sandbox's root (the open is `RESOLVE_IN_ROOT` from the root, like every other).
    public func write(_ path: String, bytes: [UInt8], mode: mode_t = 0o644) throws -> FileEntry {
        let abs = try absolute(path)
        let (parentPath, name) = Self.split(abs)
        guard !name.isEmpty else { throw AtollError(.invalidArgument, "cannot write to the root directory") }
        _ = try ensureDirectory(parentPath)
        let existed = (try? root.open(abs, flags: ATOLL_O_PATH)) != nil
        let file: OwnedFD
        do {
            // O_NONBLOCK and no O_TRUNC: a FIFO or device the sandbox put there is neither waited
            // on nor truncated; only a regular file, checked on the open descriptor, is written.
            file = try root.open(abs, flags: O_WRONLY | O_CREAT | O_NONBLOCK, mode: mode)
        } catch let error as AtollError {
            throw error.code == .notFound ? AtollError(.notFound, "\(abs): no such file or directory") : error
        }
        var st = stat()
        guard fstat(file.raw, &st) == 0 else { throw Self.error("fstat", abs) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw AtollError(.invalidArgument, "\(abs) is not a regular file") }
        guard ftruncate(file.raw, 0) == 0 else { throw Self.error("ftruncate", abs) }
        if !existed { try chown(file.raw, abs) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(file.raw, $0.baseAddress, min($0.count, 1 << 20)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Self.error("write", abs) }
            offset += n
        }
        return try info(abs)
    }

    func fstatatExists(_ dir: Int32, _ name: String) -> Bool {
        var st = stat()
        return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    func chown(_ fd: Int32, _ path: String) throws {
        guard fchown(fd, ids.host(owner.uid), ids.host(owner.gid)) == 0 else { throw Self.error("fchown", path) }
    }

    /// Makes `path` and its missing parents (like `mkdir -p`); new ones get `mode` and the user.
    @discardableResult
    public func createDirectory(_ path: String, mode: mode_t = 0o755) throws -> FileEntry {
        let abs = try absolute(path)
        _ = try ensureDirectory(abs, mode: mode)
        return try info(abs)
    }

    /// Opens `abs` as a directory, creating it and its missing parents.
    func ensureDirectory(_ abs: String, mode: mode_t = 0o755) throws -> OwnedFD {
        if let dir = try? root.open(abs, flags: O_RDONLY | O_DIRECTORY) { return dir }
        let (parentPath, name) = Self.split(abs)
        guard !name.isEmpty else { return try openDirectory("/") }
        let parent = try ensureDirectory(parentPath, mode: mode)
        if mkdirat(parent.raw, name, mode) != 0 && errno != EEXIST { throw Self.error("mkdirat", abs) }
        let fd = openat(parent.raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Self.error("openat", abs) }
        let dir = OwnedFD(fd)
        try chown(dir.raw, abs)
        _ = fchmod(dir.raw, mode)  // not subject to the umask
        return dir
    }

    /// Deletes a file, a symlink (not its target) or, with `recursive`, a directory tree.
    public func delete(_ path: String, recursive: Bool) throws {
        let abs = try absolute(path)
        guard abs != "/" else { throw AtollError(.invalidArgument, "refusing to delete the sandbox's root directory") }
        let (dir, name) = try parent(of: abs)
        var st = stat()
        guard fstatat(dir.raw, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw Self.error("fstatat", abs) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            if recursive {
                try removeTree(dir: dir.raw, name: name, path: abs)
            } else if unlinkat(dir.raw, name, AT_REMOVEDIR) != 0 {
                throw Self.error("unlinkat", abs)
            }
        } else if unlinkat(dir.raw, name, 0) != 0 {
            throw Self.error("unlinkat", abs)
        }
    }

    /// Removes a tree without following any symlink: every step is relative to an open directory.
    func removeTree(dir: Int32, name: String, path: String) throws {
        let fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Self.error("openat", path) }
        let child = OwnedFD(fd)
        for entry in try names(in: child) {
            var st = stat()
            guard fstatat(child.raw, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                try removeTree(dir: child.raw, name: entry, path: "\(path)/\(entry)")
            } else if unlinkat(child.raw, entry, 0) != 0 && errno != ENOENT {
                throw Self.error("unlinkat", "\(path)/\(entry)")
            }
        }
        if unlinkat(dir, name, AT_REMOVEDIR) != 0 && errno != ENOENT { throw Self.error("unlinkat", path) }
    }

    /// Moves (renames) `source` to `destination`. Across filesystems (e.g. from `/tmp`, which is
    /// its own mount) a regular file is copied and the original removed.
    public func move(_ source: String, to destination: String) throws {
        let from = try absolute(source)
        let to = try absolute(destination)
        let (fromDir, fromName) = try parent(of: from)
        let (toDir, toName) = try parent(of: to)
        if renameat(fromDir.raw, fromName, toDir.raw, toName) == 0 { return }
        guard errno == EXDEV else { throw Self.error("renameat", "\(from) -> \(to)") }
        var st = stat()
        guard fstatat(fromDir.raw, fromName, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw AtollError(.invalidArgument, "\(from) -> \(to): only files can move between filesystems")
        }
        let bytes = try read(from)
        _ = try write(to, bytes: bytes, mode: mode_t(st.st_mode & 0o7777))
        guard unlinkat(fromDir.raw, fromName, 0) == 0 else { throw Self.error("unlinkat", from) }
    }

    /// Changes mode (octal string such as "755"), owner and group (names or numbers inside).
    public func setPermissions(_ path: String, mode: String?, owner ownerName: String?, group groupName: String?) throws -> FileEntry {
        let abs = try absolute(path)
        let (dir, name) = try parent(of: abs)
        if let mode {
            guard let value = UInt32(mode, radix: 8), value <= 0o7777 else {
                throw AtollError(.invalidArgument, "mode must be octal permissions such as 644 or 0755, got \"\(mode.prefix(16))\"")
            }
            guard fchmodat(dir.raw, name, mode_t(value), 0) == 0 else { throw Self.error("fchmodat", abs) }
        }
        if ownerName != nil || groupName != nil {
            let uid: UInt32? = try ownerName.map { try accounts.resolve($0).uid }
            let gid: UInt32? = try groupName.map { name in
                if let numeric = UInt32(name), numeric < 65536 { return numeric }
                guard let gid = accounts.groupID(name) else { throw AtollError(.notFound, "group \"\(name.prefix(64))\" does not exist in the sandbox") }
                return gid
            }
            let hostUID = uid.map { ids.host($0) } ?? UInt32.max
            let hostGID = gid.map { ids.host($0) } ?? UInt32.max
            guard fchownat(dir.raw, name, hostUID, hostGID, AT_SYMLINK_NOFOLLOW) == 0 else { throw Self.error("fchownat", abs) }
        }
        return try entry(dir: dir.raw, name: name, path: abs)
    }

    // MARK: - Searching

    /// Visits every entry below `path` (not following symlinks, not entering /proc, /sys, /dev).
    func walk(_ path: String, _ visit: (Int32, String, String, stat) throws -> Void) throws {
        let abs = try absolute(path)
        var visited = 0
        func descend(_ dir: OwnedFD, _ dirPath: String) throws {
            for name in try names(in: dir) {
                visited += 1
                guard visited <= Self.walkLimit else { return }
                let child = dirPath == "/" ? "/\(name)" : "\(dirPath)/\(name)"
                var st = stat()
                guard fstatat(dir.raw, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                try visit(dir.raw, name, child, st)
                if (st.st_mode & S_IFMT) == S_IFDIR, !Self.skippedRoots.contains(child) {
                    let fd = openat(dir.raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if fd >= 0 { try descend(OwnedFD(fd), child) }
                }
            }
        }
        try descend(try openDirectory(abs), abs)
    }

    /// Paths below `path` whose name matches the glob `pattern` (`*.py`, `test_?.txt`, `[ab]*`).
    public func search(_ path: String, pattern: String) throws -> [String] {
        guard !pattern.isEmpty else { throw AtollError(.invalidArgument, "pattern is empty") }
        var found: [String] = []
        try walk(path) { _, name, child, _ in
            if fnmatch(pattern, name, 0) == 0 { found.append(child) }
        }
        return found.sorted()
    }

    /// Lines of regular files below `path` (or of the file `path`) that contain `pattern`.
    public func find(_ path: String, pattern: String) throws -> [FileMatch] {
        guard !pattern.isEmpty else { throw AtollError(.invalidArgument, "pattern is empty") }
        var matches: [FileMatch] = []
        func scan(_ dir: Int32, _ name: String, _ file: String, _ st: stat) {
            guard (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= Self.searchFileLimit else { return }
            // Checked again on the open descriptor (O_NONBLOCK: a FIFO swapped in meanwhile is
            // not waited on).
            let fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { return }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            var opened = stat()
            guard fstat(fd, &opened) == 0, (opened.st_mode & S_IFMT) == S_IFREG, opened.st_size <= Self.searchFileLimit else { return }
            guard let data = try? handle.readToEnd(), !data.contains(0) else { return }
            for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where line.contains(pattern) {
                matches.append(FileMatch(file: file, line: i + 1, content: String(line)))
            }
        }
        let abs = try absolute(path)
        let single = try info(abs)
        if !single.isDirectory {
            let (dir, name) = try parent(of: abs)
            var st = stat()
            if fstatat(dir.raw, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { scan(dir.raw, name, abs, st) }
            return matches
        }
        try walk(abs) { dir, name, file, st in scan(dir, name, file, st) }
        return matches
    }
}

extension PasswdDatabase {
    /// The name of group `gid`, from the sandbox's /etc/group.
    public func groupName(_ gid: UInt32) -> String? { groups.first { $0.gid == gid }?.name }

    /// The id of group `name`.
    public func groupID(_ name: String) -> UInt32? { groups.first { $0.name == name }?.gid }
}

extension SandboxFiles {
    /// Whether `path` exists (without following a final symlink).
    public func exists(_ path: String) -> Bool {
        guard let abs = try? absolute(path), let (dir, name) = try? parent(of: abs) else { return false }
        return fstatatExists(dir.raw, name)
    }

    /// Makes a FIFO owned by the sandbox's user.
    public func makeFifo(_ path: String, mode: mode_t = 0o600) throws {
        let abs = try absolute(path)
        let (dir, name) = try parent(of: abs)
        guard mkfifoat(dir.raw, name, mode) == 0 else { throw Self.error("mkfifoat", abs) }
        guard fchownat(dir.raw, name, ids.host(owner.uid), ids.host(owner.gid), AT_SYMLINK_NOFOLLOW) == 0 else {
            throw Self.error("fchownat", abs)
        }
    }

    /// Appends `bytes` to an existing FIFO without blocking (one write: keep it under PIPE_BUF
    /// so that it arrives whole).
    public func writeToFifo(_ path: String, _ bytes: [UInt8]) throws {
        let abs = try absolute(path)
        let (dir, name) = try parent(of: abs)
        let fd = openat(dir.raw, name, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Self.error("openat", abs) }
        let file = OwnedFD(fd)
        var st = stat()
        guard fstat(file.raw, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO else {
            throw AtollError(.conflict, "\(abs) is not a FIFO")
        }
        let n = bytes.withUnsafeBytes { Glibc.write(file.raw, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw Self.error("write", abs) }
    }
}
