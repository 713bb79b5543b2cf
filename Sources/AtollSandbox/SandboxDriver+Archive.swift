import AtollCore
public import AtollImage
import AtollLinux
import Crypto
import Foundation
import Glibc

/// Archives: the sandbox's own filesystem (the overlay's upper directory and `/tmp`) as a
/// zstd-compressed tar in the local object store, with every owner, mode, xattr (the overlay's
/// own markers included), whiteout and sparse file kept. The disk is mounted only inside a
/// private mount namespace of the archiving process (`unshare --mount`), so the host's mount
/// table never sees it, and the mount and its loop device vanish with that process.
extension SandboxDriver {
    /// tar options shared by both directions: numeric ids (the sandbox's host range), every
    /// xattr namespace (trusted.overlay.* marks opaque directories and redirects), ACLs.
    static let tarOptions = "--numeric-owner --xattrs --xattrs-include='*' --acls"

    public func archive(_ machine: SandboxMachine, cancellation: Cancellation) async throws -> ArchiveInfo {
        let config = configuration
        let id = machine.id
        let final = config.archivePath(id)
        let temporary = final + ".tmp"
        let tools = try ArchiveTools.locate()
        return try await Blocking.run("atoll-archive") {
            try self.disks.waitDetached(image: config.diskPath(id), timeout: 5)
            unlink(temporary)
            let script = """
                set -euo pipefail
                mount -o ro,loop "$1" "$2"
                \(tools.tar) \(Self.tarOptions) --sparse -C "$2" -cf - \(DiskLayout.upper) \(DiskLayout.tmp) | \(tools.zstd) -q -T0 -3 -o "$3"
                """
            do {
                try ArchiveTools.runIsolated(script, [config.diskPath(id), config.mountPoint(id), temporary], tools: tools, cancellation: cancellation)
                guard !cancellation.isCancelled else { throw AtollError(.conflict, "archiving sandbox \(id) was cancelled") }
                try DurableFile.sync(temporary)
                let sha = try ArchiveTools.sha256(temporary)
                let bytes = UInt64((try FileManager.default.attributesOfItem(atPath: temporary)[.size] as? NSNumber)?.uint64Value ?? 0)
                guard rename(temporary, final) == 0 else { throw SystemError.last("rename", final) }
                DurableFile.syncDirectory(config.archiveDirectory)
                return ArchiveInfo(path: final, bytes: bytes, sha256: sha)
            } catch {
                unlink(temporary)
                throw error
            }
        }
    }

    public func restore(_ machine: SandboxMachine, from archive: ArchiveInfo) async throws {
        let config = configuration
        let id = machine.id
        let tools = try ArchiveTools.locate()
        try await Blocking.run("atoll-restore") {
            guard KernelFile.exists(archive.path) else {
                throw AtollError(.notFound, "the archive of sandbox \(id) is missing: \(archive.path)")
            }
            let sha = try ArchiveTools.sha256(archive.path)
            guard sha == archive.sha256 else {
                throw AtollError(.internal, "the archive \(archive.path) is corrupt: its SHA-256 is \(sha), expected \(archive.sha256)")
            }
            let dir = config.sandboxDirectory(id)
            for path in [dir, config.mountPoint(id)] where mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw SystemError.last("mkdir", path)
            }
            // A disk left by an interrupted restore is incomplete: start over.
            let disk = config.diskPath(id)
            if KernelFile.exists(disk) {
                try self.disks.waitDetached(image: disk, timeout: 5)
                unlink(disk)
            }
            try self.disks.create(
                at: disk, sizeBytes: UInt64(machine.resources.diskGiB) << 30,
                entries: Self.diskEntries(id: id, ids: machine.ids), scratch: dir)
            let script = """
                set -euo pipefail
                mount -o loop "$1" "$2"
                \(tools.zstd) -q -dc "$3" | \(tools.tar) \(Self.tarOptions) -xpf - -C "$2"
                """
            do {
                try ArchiveTools.runIsolated(script, [disk, config.mountPoint(id), archive.path], tools: tools, cancellation: nil)
                try self.disks.waitDetached(image: disk, timeout: 5)
            } catch {
                unlink(disk)
                throw error
            }
        }
    }

    public func removeArchive(path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else { throw SystemError.last("unlink", path) }
    }
}

/// The host tools archives use, found once per operation.
struct ArchiveTools {
    var unshare: String
    var bash: String
    var tar: String
    var zstd: String

    static func locate() throws -> ArchiveTools {
        ArchiveTools(
            unshare: try HostCommand.locate("unshare", package: "util-linux"),
            bash: try HostCommand.locate("bash", package: "bash"),
            tar: try HostCommand.locate("tar", package: "tar"),
            zstd: try HostCommand.locate("zstd", package: "zstd")
        )
    }

    /// Runs `script` with bash in a private mount namespace and a pid namespace of its own, with
    /// bash as its PID 1: killing `unshare` kills bash (`--kill-child`), and the kernel then kills
    /// every other process of the pipeline, which also releases the disk's mount at once.
    static func runIsolated(_ script: String, _ arguments: [String], tools: ArchiveTools, cancellation: Cancellation?) throws {
        let result = try HostProcess.run(
            tools.unshare, ["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", tools.bash, "-c", script, "atoll-archive"] + arguments,
            environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"], captureStdout: false,
            started: { pid in cancellation?.onCancel { _ = kill(pid, SIGKILL) } })
        cancellation?.clear()
        guard result.succeeded else {
            if cancellation?.isCancelled == true { throw AtollError(.conflict, "the archive operation was cancelled") }
            let message = String(decoding: result.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let how = result.exitStatus.map { "status \($0)" } ?? "signal \(result.signal ?? 0)"
            throw AtollError(.system, "archive helper failed with \(how): \(message.suffix(400))")
        }
    }

    /// The hex SHA-256 of a file (the image store's streamed digest, without its `sha256:`).
    static func sha256(_ path: String) throws -> String {
        String(try ImageStore.sha256(of: path).dropFirst("sha256:".count))
    }
}

/// fsync helpers for files written outside Swift.
enum DurableFile {
    static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SystemError.last("fsync", path) }
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}

extension SandboxDriver {
    /// A sandbox's changes to its root filesystem (the overlay's upper directory) as a new image
    /// layer: GNU tar streams the upper directory from a read-only mount in a helper's private
    /// mount namespace, and Atoll's unpacker writes the layer, shifting owners back from the
    /// sandbox's range and keeping whiteouts and opaque directories. What the sandbox wrote is
    /// hostile input here like any image layer. A stopped sandbox's disk image is mounted on a
    /// loop device of its own; a `live` one (its processes frozen by the caller) is mounted from
    /// the loop device the sandbox uses — the same ext4 instance, so nothing is read stale — and
    /// made read-only at once (ext4 refuses a read-only second mount of a read-write one).
    public func captureLayer(_ machine: SandboxMachine, store: ImageStore, live: Bool) async throws -> (diffID: String, report: UnpackReport) {
        let config = configuration
        let id = machine.id
        let tools = try ArchiveTools.locate()
        return try await Blocking.run("atoll-capture") {
            let source: String
            let mount: String
            if live {
                guard let device = LoopAttachment.devices(backing: config.diskPath(id)).first else {
                    throw AtollError(.conflict, "sandbox \(id) has no disk attached: it is not running")
                }
                source = "/dev/loop\(device)"
                mount = "mount -t ext4 -o nosuid,nodev,noexec \"$1\" \"$2\" && mount -o remount,bind,ro,nosuid,nodev,noexec \"$2\""
            } else {
                try self.disks.waitDetached(image: config.diskPath(id), timeout: 5)
                source = config.diskPath(id)
                mount = "mount -o ro,nosuid,nodev,noexec,loop \"$1\" \"$2\""
            }
            let script = """
                set -euo pipefail
                \(mount)
                cd "$2/\(DiskLayout.upper)"
                # The runtime writes /etc/hosts and /etc/hostname at every start: not the step's
                # changes (Docker leaves them out of layers too, with /etc/resolv.conf).
                exec \(tools.tar) --numeric-owner --xattrs --xattrs-include='*' --format=posix --pax-option=delete=atime,delete=ctime \\
                    --anchored --exclude=./etc/hosts --exclude=./etc/hostname --exclude=./etc/resolv.conf -cf - .
                """
            return try store.makeLayer { root in
                try LayerStream.unpack(
                    command: tools.unshare,
                    arguments: [
                        "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", tools.bash, "-c", script, "atoll-capture", source,
                        config.mountPoint(id),
                    ],
                    environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"], into: root, source: .overlayUpper(idBase: Int(machine.ids.base)))
            }
        }
    }

    /// The snapshot a sandbox was made from (its layers and image config).
    public func snapshot(of machine: SandboxMachine) throws -> Snapshot {
        try snapshots.snapshot(named: machine.snapshot)
    }
}
