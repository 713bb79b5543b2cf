public import AtollCore
import AtollLinux
import CRuntime
import Glibc

/// A tar entry's name, checked: relative, no `..`, no empty result unless it names the layer's
/// root. `.` components and a trailing `/` are dropped, as tar does.
public struct LayerPath: Sendable, Equatable {
    public var components: [String]

    public init(_ name: String, entry: String) throws {
        guard !name.hasPrefix("/") else {
            throw AtollError(.invalidArgument, "layer entry \"\(entry.prefix(200))\": absolute names are refused")
        }
        var parts: [String] = []
        for part in name.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            guard part != ".." else {
                throw AtollError(.invalidArgument, "layer entry \"\(entry.prefix(200))\": \"..\" in a name is refused")
            }
            guard !part.utf8.contains(0) else {
                throw AtollError(.invalidArgument, "layer entry \"\(entry.prefix(200))\": a NUL byte in a name is refused")
            }
            parts.append(String(part))
        }
        components = parts
    }

    public var isRoot: Bool { components.isEmpty }
    public var leaf: String { components.last ?? "." }
    public var parent: [String] { Array(components.dropLast()) }
}

/// What one unpack did, for logs and tests.
public struct UnpackReport: Sendable, Equatable {
    public var entries = 0
    public var files = 0
    public var bytes = 0
    public var whiteouts = 0
    public var opaqueDirectories = 0
    /// Character and block devices: never created in a layer.
    public var skippedDevices = 0
    /// Extended attributes outside the allowed namespaces (e.g. `trusted.*`, which overlayfs trusts).
    public var skippedAttributes = 0

    public init() {}
}

/// Unpacks one image layer (an OCI/Docker layer tar) into a directory Atoll owns, in the form
/// overlayfs takes as a lower layer: whiteouts become 0/0 character devices, opaque directories
/// get `trusted.overlay.opaque=y`.
///
/// The tar is hostile input and this runs as host root, so every name is resolved with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`
/// from the layer's root, one component at a time: an absolute name, a `..`, a write through a
/// symlink the tar planted (or any symlink), a hard link to anything outside the layer are
/// refused with the entry named, and nothing is written outside the directory. Owners are
/// numeric (0–65535, shifted into each sandbox's range by the idmapped mount); setuid bits,
/// xattrs in `user.*`, `security.capability` and POSIX ACLs, symlinks, hard links, FIFOs and
/// holes (runs of zero blocks become holes) are kept; device nodes are skipped.
public final class LayerUnpacker {
    /// Where the tar comes from, which decides how whiteouts are spelled.
    public enum Source: Sendable {
        /// An image layer (OCI): `.wh.NAME` files and `.wh..wh..opq`.
        case imageLayer
        /// A sandbox's overlay upper directory, tarred by Atoll itself (a build step): whiteouts
        /// are 0/0 character devices, opaque directories carry `trusted.overlay.opaque=y`, and a
        /// `.wh.` name is just a name. Owners are shifted down by `idBase` (the sandbox's range).
        case overlayUpper(idBase: Int)
    }

    public static let allowedAttributePrefixes = ["user.", "security.capability", "system.posix_acl_access", "system.posix_acl_default"]
    static let whiteoutPrefix = ".wh."
    static let opaqueMarker = ".wh..wh..opq"
    static let maximumID = 65535

    private let root: OwnedFD
    private let rootPath: String
    private let source: Source
    public private(set) var report = UnpackReport()
    /// Renames every entry (and hard link target) before it is checked: where COPY --from
    /// places a stage's files. The result is checked like any name.
    public var rename: (@Sendable (String) -> String)?
    /// The last parent directory opened, reused while entries stay in one directory.
    private var cachedParent: (components: [String], fd: OwnedFD)?
    /// Directory times are set last: creating entries inside a directory changes its mtime.
    private var directoryTimes: [([String], Int)] = []

    /// `root` must be an empty directory Atoll created.
    public init(root: String, source: Source = .imageLayer) throws {
        rootPath = root
        self.source = source
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", root) }
        self.root = OwnedFD(fd)
    }

    /// Unpacks every entry of `reader`.
    public func unpack(_ reader: TarReader) throws {
        while let entry = try reader.next() {
            try apply(entry, reader: reader)
        }
        try finish()
    }

    /// Applies one entry (its data read from `reader`).
    public func apply(_ original: TarEntry, reader: TarReader) throws {
        var entry = original
        if let rename {
            entry.name = rename(entry.name)
            if entry.kind == .hardLink { entry.linkName = rename(entry.linkName) }
        }
        report.entries += 1
        let path = try LayerPath(entry.name, entry: entry.name)
        if path.isRoot {
            guard entry.kind == .directory else { throw refusal(entry, "only a directory may name the layer's root") }
            try setMetadata(fd: root.raw, entry: entry)
            directoryTimes.append(([], entry.modificationTime))
            return
        }
        let leaf = path.leaf
        if case .imageLayer = source, leaf.hasPrefix(Self.whiteoutPrefix) {
            try applyWhiteout(entry, path: path)
            return
        }
        let parent = try openParent(path.parent, entry: entry)
        switch entry.kind {
        case .directory:
            try makeDirectory(entry, parent: parent, path: path)
        case .file:
            try removeExisting(parent, leaf, entry: entry)
            let rc = atoll_open_beneath(parent, leaf, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard rc >= 0 else { throw failure(entry, "openat2", errno: -rc) }
            let file = OwnedFD(rc)
            try writeData(entry, reader: reader, fd: file.raw)
            try setMetadata(fd: file.raw, entry: entry)
            report.files += 1
        case .symlink:
            try removeExisting(parent, leaf, entry: entry)
            guard symlinkat(entry.linkName, parent, leaf) == 0 else { throw failure(entry, "symlinkat", errno: errno) }
            guard fchownat(parent, leaf, uid_t(try owner(entry.uid, entry)), gid_t(try owner(entry.gid, entry)), AT_SYMLINK_NOFOLLOW) == 0 else {
                throw failure(entry, "fchownat", errno: errno)
            }
            var times = Self.times(entry.modificationTime)
            _ = utimensat(parent, leaf, &times, AT_SYMLINK_NOFOLLOW)
        case .hardLink:
            let target = try LayerPath(entry.linkName, entry: entry.name)
            guard !target.isRoot else { throw refusal(entry, "a hard link to the layer's root") }
            let targetParent = try openExistingParent(target.parent, entry: entry)
            var st = stat()
            guard fstatat(targetParent.raw, target.leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw refusal(entry, "a hard link to \"\(entry.linkName.prefix(200))\", which this layer does not hold")
            }
            guard (st.st_mode & S_IFMT) != S_IFDIR else { throw refusal(entry, "a hard link to a directory") }
            try removeExisting(parent, leaf, entry: entry)
            guard linkat(targetParent.raw, target.leaf, parent, leaf, 0) == 0 else { throw failure(entry, "linkat", errno: errno) }
        case .fifo:
            try removeExisting(parent, leaf, entry: entry)
            guard mkfifoat(parent, leaf, 0o600) == 0 else { throw failure(entry, "mkfifoat", errno: errno) }
            let rc = atoll_open_beneath(parent, leaf, Int32(ATOLL_O_PATH), 0)
            guard rc >= 0 else { throw failure(entry, "openat2", errno: -rc) }
            let fd = OwnedFD(rc)
            // fchown/fchmod do not take O_PATH descriptors; their /proc/self/fd forms do (no path walk).
            guard fchownat(fd.raw, "", uid_t(try owner(entry.uid, entry)), gid_t(try owner(entry.gid, entry)), Int32(ATOLL_AT_EMPTY_PATH)) == 0 else {
                throw failure(entry, "fchownat", errno: errno)
            }
            guard chmod("/proc/self/fd/\(fd.raw)", mode_t(entry.mode)) == 0 else { throw failure(entry, "chmod", errno: errno) }
        case .characterDevice where isUpper && entry.deviceMajor == 0 && entry.deviceMinor == 0:
            // An overlayfs whiteout in a build step's upper directory: kept as one.
            try removeExisting(parent, leaf, entry: entry)
            guard mknodat(parent, leaf, S_IFCHR | 0o600, 0) == 0 else { throw failure(entry, "mknodat(whiteout)", errno: errno) }
            report.whiteouts += 1
        case .characterDevice, .blockDevice:
            report.skippedDevices += 1
        }
    }

    /// Sets directory times, once every entry is in place.
    public func finish() throws {
        cachedParent = nil
        for (components, mtime) in directoryTimes.reversed() {
            let fd = components.isEmpty ? OwnedFD(dup(root.raw)) : (try? openExistingDirectory(components))
            guard let fd, fd.raw >= 0 else { continue }
            var times = Self.times(mtime)
            _ = futimens(fd.raw, &times)
        }
        directoryTimes.removeAll()
    }

    // MARK: - Entries

    private func makeDirectory(_ entry: TarEntry, parent: Int32, path: LayerPath) throws {
        var st = stat()
        if fstatat(parent, path.leaf, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) != S_IFDIR {
            try removeExisting(parent, path.leaf, entry: entry)
        }
        if mkdirat(parent, path.leaf, 0o700) != 0 && errno != EEXIST { throw failure(entry, "mkdirat", errno: errno) }
        let rc = atoll_open_beneath(parent, path.leaf, O_RDONLY | O_DIRECTORY, 0)
        guard rc >= 0 else { throw failure(entry, "openat2", errno: -rc) }
        let fd = OwnedFD(rc)
        try setMetadata(fd: fd.raw, entry: entry)
        directoryTimes.append((path.components, entry.modificationTime))
    }

    private func applyWhiteout(_ entry: TarEntry, path: LayerPath) throws {
        let leaf = path.leaf
        if leaf == Self.opaqueMarker {
            // "Everything below in lower layers is hidden": overlayfs's opaque directory.
            let located = path.parent.isEmpty ? OwnedFD(dup(root.raw)) : try openDirectoryCreating(path.parent, entry: entry)
            // xattr calls need a real descriptor, not the O_PATH one resolution gives.
            let opened = atoll_open_beneath(located.raw, ".", O_RDONLY | O_DIRECTORY, 0)
            guard opened >= 0 else { throw failure(entry, "openat2", errno: -opened) }
            let directory = OwnedFD(opened)
            let value: [UInt8] = [UInt8(ascii: "y")]
            let rc = atoll_fsetxattr(directory.raw, "trusted.overlay.opaque", value, 1)
            guard rc == 0 else { throw failure(entry, "fsetxattr(trusted.overlay.opaque)", errno: -rc) }
            report.opaqueDirectories += 1
            return
        }
        let hidden = String(leaf.dropFirst(Self.whiteoutPrefix.count))
        // Other .wh..wh. names are AUFS bookkeeping (hard-link directories): nothing to apply.
        guard !hidden.hasPrefix(".wh."), !hidden.isEmpty, hidden != ".", hidden != ".." else { return }
        let parent = try openParent(path.parent, entry: entry)
        try removeExisting(parent, hidden, entry: entry)
        // A whiteout as overlayfs reads it: a character device 0/0.
        guard mknodat(parent, hidden, S_IFCHR | 0o600, 0) == 0 else { throw failure(entry, "mknodat(whiteout)", errno: errno) }
        report.whiteouts += 1
    }

    private func writeData(_ entry: TarEntry, reader: TarReader, fd: Int32) throws {
        // Data goes out in whole 4 KiB blocks (gathered across the reader's chunks); a block of
        // zeros becomes a hole, so a sparse file stays sparse.
        var block = [UInt8](repeating: 0, count: 4096)
        var filled = 0
        var offset = 0
        var holes = false
        func flush() throws {
            guard filled > 0 else { return }
            if filled == 4096 && Self.isZero(block) {
                holes = true
            } else {
                var done = 0
                while done < filled {
                    let written = block.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, filled - done, off_t(offset + done)) }
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw failure(entry, "pwrite", errno: errno)
                    }
                    done += written
                }
            }
            offset += filled
            filled = 0
        }
        try reader.readData { chunk in
            var index = 0
            while index < chunk.count {
                let n = min(4096 - filled, chunk.count - index)
                block.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: filled).copyMemory(from: chunk.baseAddress! + index, byteCount: n) }
                filled += n
                index += n
                if filled == 4096 { try flush() }
            }
        }
        try flush()
        if holes, ftruncate(fd, off_t(offset)) != 0 { throw failure(entry, "ftruncate", errno: errno) }
        report.bytes += offset
    }

    private static let zeroPage = [UInt8](repeating: 0, count: 4096)

    private static func isZero(_ bytes: [UInt8]) -> Bool {
        zeroPage.withUnsafeBytes { zero in bytes.withUnsafeBytes { memcmp(zero.baseAddress!, $0.baseAddress!, 4096) == 0 } }
    }

    /// Owner, then mode (a chown clears setuid), then xattrs and times.
    private func setMetadata(fd: Int32, entry: TarEntry) throws {
        guard fchown(fd, uid_t(try owner(entry.uid, entry)), gid_t(try owner(entry.gid, entry))) == 0 else {
            throw failure(entry, "fchown", errno: errno)
        }
        guard fchmod(fd, mode_t(entry.mode & 0o7777)) == 0 else { throw failure(entry, "fchmod", errno: errno) }
        for (name, value) in entry.xattrs.sorted(by: { $0.key < $1.key }) {
            let opaqueMarker = isUpper && name == "trusted.overlay.opaque" && entry.kind == .directory
            guard opaqueMarker || Self.allowedAttributePrefixes.contains(where: { name.hasPrefix($0) }) else {
                report.skippedAttributes += 1
                continue
            }
            let rc = value.withUnsafeBytes { atoll_fsetxattr(fd, name, $0.baseAddress, $0.count) }
            guard rc == 0 else { throw failure(entry, "fsetxattr(\(name.prefix(60)))", errno: -rc) }
            if opaqueMarker { report.opaqueDirectories += 1 }
        }
        if entry.kind == .file {
            var times = Self.times(entry.modificationTime)
            _ = futimens(fd, &times)
        }
    }

    private var isUpper: Bool {
        if case .overlayUpper = source { return true }
        return false
    }

    private func owner(_ tarID: Int, _ entry: TarEntry) throws -> Int {
        var id = tarID
        if case .overlayUpper(let base) = source { id -= base }
        guard (0...Self.maximumID).contains(id) else {
            throw refusal(entry, "owner id \(tarID) is outside the ids a snapshot may use (0-\(Self.maximumID), which each sandbox maps into its own range)")
        }
        return id
    }

    // MARK: - Resolution

    /// The directory `components` names (created as 0755 root directories where missing, as
    /// Docker does for entries whose parents the tar omits); never through a symlink.
    private func openParent(_ components: [String], entry: TarEntry) throws -> Int32 {
        if components.isEmpty { return root.raw }
        if let cachedParent, cachedParent.components == components { return cachedParent.fd.raw }
        let fd = try openDirectoryCreating(components, entry: entry)
        cachedParent = (components, fd)
        return fd.raw
    }

    private func openDirectoryCreating(_ components: [String], entry: TarEntry) throws -> OwnedFD {
        var current = OwnedFD(dup(root.raw))
        for component in components {
            var rc = atoll_open_beneath(current.raw, component, Int32(ATOLL_O_PATH) | O_DIRECTORY, 0)
            if rc == -ENOENT {
                if mkdirat(current.raw, component, 0o755) != 0 && errno != EEXIST { throw failure(entry, "mkdirat", errno: errno) }
                rc = atoll_open_beneath(current.raw, component, Int32(ATOLL_O_PATH) | O_DIRECTORY, 0)
            }
            guard rc >= 0 else { throw resolutionFailure(entry, component: component, errno: -rc) }
            current = OwnedFD(rc)
        }
        return current
    }

    private func openExistingParent(_ components: [String], entry: TarEntry) throws -> OwnedFD {
        var current = OwnedFD(dup(root.raw))
        for component in components {
            let rc = atoll_open_beneath(current.raw, component, Int32(ATOLL_O_PATH) | O_DIRECTORY, 0)
            guard rc >= 0 else {
                if rc == -ENOENT { throw refusal(entry, "a hard link to \"\(entry.linkName.prefix(200))\", which this layer does not hold") }
                throw resolutionFailure(entry, component: component, errno: -rc)
            }
            current = OwnedFD(rc)
        }
        return current
    }

    private func openExistingDirectory(_ components: [String]) throws -> OwnedFD {
        var current = OwnedFD(dup(root.raw))
        for component in components {
            let rc = atoll_open_beneath(current.raw, component, O_RDONLY | O_DIRECTORY, 0)
            guard rc >= 0 else { throw SystemError.error("openat2", component, errno: -rc) }
            current = OwnedFD(rc)
        }
        return current
    }

    /// Removes what `name` holds in `parent` (an earlier entry of the same name: the later wins).
    private func removeExisting(_ parent: Int32, _ name: String, entry: TarEntry) throws {
        if unlinkat(parent, name, 0) == 0 || errno == ENOENT { return }
        guard errno == EISDIR else { throw failure(entry, "unlinkat", errno: errno) }
        try removeTree(parent, name, entry: entry)
    }

    private func removeTree(_ parent: Int32, _ name: String, entry: TarEntry) throws {
        if cachedParent != nil { cachedParent = nil }
        let rc = atoll_open_beneath(parent, name, O_RDONLY | O_DIRECTORY, 0)
        guard rc >= 0 else { throw failure(entry, "openat2", errno: -rc) }
        guard let stream = fdopendir(rc) else {
            close(rc)
            throw failure(entry, "fdopendir", errno: errno)
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let item = readdir(stream) {
            let child = withUnsafeBytes(of: item.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if child != "." && child != ".." { names.append(child) }
        }
        let fd = dirfd(stream)
        for child in names {
            if unlinkat(fd, child, 0) != 0 {
                guard errno == EISDIR else { throw failure(entry, "unlinkat", errno: errno) }
                try removeTree(fd, child, entry: entry)
            }
        }
        guard unlinkat(parent, name, AT_REMOVEDIR) == 0 else { throw failure(entry, "unlinkat", errno: errno) }
    }

    // MARK: - Errors

    private func refusal(_ entry: TarEntry, _ why: String) -> AtollError {
        AtollError(.invalidArgument, "layer entry \"\(entry.name.prefix(200))\" refused: \(why)")
    }

    private func failure(_ entry: TarEntry, _ call: String, errno err: Int32) -> AtollError {
        SystemError.error(call, "\(rootPath)/\(entry.name.prefix(200))", errno: err)
    }

    private func resolutionFailure(_ entry: TarEntry, component: String, errno err: Int32) -> AtollError {
        switch err {
        case ELOOP, EXDEV:
            return refusal(entry, "\"\(component.prefix(100))\" on its path is a symlink (writes through symlinks are refused)")
        case ENOTDIR:
            return refusal(entry, "\"\(component.prefix(100))\" on its path is not a directory")
        default:
            return failure(entry, "openat2", errno: err)
        }
    }

    static func times(_ seconds: Int) -> [timespec] {
        let time = timespec(tv_sec: seconds, tv_nsec: 0)
        return [time, time]
    }
}
