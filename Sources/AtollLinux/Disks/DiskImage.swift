import AtollCore
import Foundation
public import Glibc

/// A sandbox's disk: a sparse ext4 image file whose size is the sandbox's disk limit. It holds the
/// overlay's upper and work directories and `/tmp`, so a full disk means ENOSPC inside the sandbox
/// and nothing outside it (no disk quotas needed, which this kernel lacks).
public struct DiskImage: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// A file or directory to put on a new disk, with its owner and mode (host ids).
    public struct Entry: Sendable {
        public enum Kind: Sendable {
            case directory
            case file(String)
        }
        public var path: String
        public var kind: Kind
        public var uid: UInt32
        public var gid: UInt32
        public var mode: mode_t

        public init(path: String, kind: Kind, uid: UInt32, gid: UInt32, mode: mode_t) {
            self.path = path
            self.kind = kind
            self.uid = uid
            self.gid = gid
            self.mode = mode
        }
    }

    /// Creates the image: a sparse file of `sizeBytes`, formatted ext4 and populated with
    /// `entries` in one mkfs run (`mkfs.ext4 -d`), so nothing is ever mounted on the host.
    /// No journal, no reserved blocks and lazy table initialisation keep mkfs at a few ms.
    public static func create(at path: String, sizeBytes: UInt64, entries: [Entry], scratch: String) throws -> DiskImage {
        let mkfs = try HostCommand.locate("mkfs.ext4", package: "e2fsprogs")
        let staging = "\(scratch)/staging"
        try? FileManager.default.removeItem(atPath: staging)
        guard mkdir(staging, 0o755) == 0 else { throw SystemError.last("mkdir", staging) }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        for entry in entries {
            let full = "\(staging)/\(entry.path)"
            switch entry.kind {
            case .directory:
                guard mkdir(full, entry.mode) == 0 else { throw SystemError.last("mkdir", full) }
            case .file(let content):
                let fd = open(full, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, entry.mode)
                guard fd >= 0 else { throw SystemError.last("open", full) }
                let bytes = Array(content.utf8)
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
                guard n == bytes.count else { throw SystemError.last("write", full) }
            }
            guard lchown(full, entry.uid, entry.gid) == 0 else { throw SystemError.last("lchown", full) }
            guard chmod(full, entry.mode) == 0 else { throw SystemError.last("chmod", full) }
        }
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        let truncated = ftruncate(fd, off_t(sizeBytes))
        let truncErrno = errno
        close(fd)
        guard truncated == 0 else {
            unlink(path)
            throw SystemError.error("ftruncate", path, errno: truncErrno)
        }
        do {
            try HostCommand.run(
                mkfs,
                [
                    "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
                    "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0",
                    "-d", staging, path,
                ])
        } catch {
            unlink(path)
            throw error
        }
        return DiskImage(path: path)
    }

    /// The image's apparent size (the disk limit).
    public func sizeBytes() throws -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError.last("stat", path) }
        return UInt64(st.st_size)
    }

    /// Bytes the image really occupies on the host (it is sparse).
    public func allocatedBytes() throws -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError.last("stat", path) }
        return UInt64(st.st_blocks) * 512
    }

    /// Grows the filesystem to `newSizeBytes`. Only while the sandbox is stopped (not mounted);
    /// shrinking is refused.
    public func grow(to newSizeBytes: UInt64) throws {
        let current = try sizeBytes()
        guard newSizeBytes >= current else {
            throw AtollError(.invalidArgument, "disk can only grow: it has \(current >> 30) GiB, asked for \(newSizeBytes >> 30) GiB")
        }
        // Also when the file already has the size: a grow interrupted after the truncate left the
        // filesystem smaller than its image.
        let e2fsck = try HostCommand.locate("e2fsck", package: "e2fsprogs")
        let resize2fs = try HostCommand.locate("resize2fs", package: "e2fsprogs")
        if newSizeBytes > current {
            guard truncate(path, off_t(newSizeBytes)) == 0 else { throw SystemError.last("truncate", path) }
        }
        // resize2fs insists on a freshly checked filesystem.
        try HostCommand.run(e2fsck, ["-f", "-p", path])
        try HostCommand.run(resize2fs, ["-f", path])
    }
}
