import AtollCore
import AtollLinux
import Foundation

/// What the runtime persists about a sandbox (one JSON file per sandbox until the runner's
/// database takes over).
struct SandboxRecord: Codable, Sendable {
    /// A process identified by pid and start time (immune to pid reuse).
    struct ProcessRef: Codable, Sendable, Hashable {
        var pid: Int32
        var startTime: UInt64

        var isRunning: Bool { ProcFS.isRunning(pid, startTime: startTime) }

        static func current() -> ProcessRef {
            let pid = getpid()
            return ProcessRef(pid: pid, startTime: ProcFS.startTime(pid) ?? 0)
        }
    }

    /// Present while the sandbox runs.
    struct Running: Codable, Sendable {
        var initProcess: ProcessRef
        var startedAt: Date
    }

    var id: SandboxID
    var snapshot: String
    var resources: Resources
    var limits: CgroupLimits
    var ids: IDRange
    var user: String
    var env: [String: String]
    var createdAt: Date
    var running: Running?
    /// For `atoll run`: the process the sandbox belongs to; when it is gone, so is the sandbox.
    var owner: ProcessRef?
}

/// Sandbox directories and their records: `<sandboxes>/<id>/{sandbox.json,disk.img,mnt/}`.
struct SandboxStore: Sendable {
    let directory: String

    func sandboxDirectory(_ id: SandboxID) -> String { "\(directory)/\(id)" }
    func recordPath(_ id: SandboxID) -> String { "\(sandboxDirectory(id))/sandbox.json" }
    func diskPath(_ id: SandboxID) -> String { "\(sandboxDirectory(id))/disk.img" }
    func mountPoint(_ id: SandboxID) -> String { "\(sandboxDirectory(id))/mnt" }

    func exists(_ id: SandboxID) -> Bool { KernelFile.exists(recordPath(id)) }

    /// Writes the record durably: temporary file, fsync, rename, fsync of the directory.
    func save(_ record: SandboxRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(record)
        try DurableFile.write(data, to: recordPath(record.id))
    }

    func load(_ id: SandboxID) throws -> SandboxRecord {
        guard let data = FileManager.default.contents(atPath: recordPath(id)) else {
            throw AtollError(.notFound, "sandbox \(id) not found")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(SandboxRecord.self, from: data)
        } catch {
            throw AtollError(.internal, "the record of sandbox \(id) at \(recordPath(id)) is unreadable", cause: "\(error)")
        }
    }

    func ids() -> [SandboxID] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { try? SandboxID($0) }.filter(exists).sorted()
    }
}

/// Crash-safe whole-file writes.
enum DurableFile {
    static func write(_ data: Data, to path: String) throws {
        let temporary = "\(path).tmp"
        let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.last("open", temporary) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else {
            unlink(temporary)
            throw SystemError.last("write", temporary)
        }
        guard rename(temporary, path) == 0 else { throw SystemError.last("rename", path) }
        let dir = (path as NSString).deletingLastPathComponent
        let dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }
}
