import AtollCore
import Foundation
import Glibc

/// A block of host uids and gids that a sandbox's ids 0..<count map to. Each sandbox owns its
/// block alone, so no two sandboxes share an unprivileged host identity.
public struct IDRange: Sendable, Hashable, Codable {
    /// Host uid/gid that the sandbox's root (0) maps to.
    public var base: UInt32
    /// Number of ids mapped (65536: every 16-bit id, `nobody` included).
    public var count: UInt32

    public init(base: UInt32, count: UInt32) {
        self.base = base
        self.count = count
    }

    /// The host id for sandbox id `inside`.
    public func host(_ inside: UInt32) -> UInt32 { base + inside }

    public func contains(hostID: UInt32) -> Bool { hostID >= base && hostID < base + count }
}

/// Hands out id ranges from a contiguous region of host ids, one slot per sandbox, and persists
/// who owns which slot as one file per slot (`slots/<n>` containing the owner), created with
/// O_EXCL so two processes can never claim the same slot.
public struct IDRangeAllocator: Sendable {
    public let directory: String
    /// First host id of slot 0. Far above ordinary users and the usual /etc/subuid ranges.
    public let start: UInt32
    public let rangeSize: UInt32
    public let slots: Int

    public init(directory: String, start: UInt32 = 1 << 28, rangeSize: UInt32 = 65536, slots: Int = 4096) {
        self.directory = directory
        self.start = start
        self.rangeSize = rangeSize
        self.slots = slots
    }

    func range(slot: Int) -> IDRange { IDRange(base: start + UInt32(slot) * rangeSize, count: rangeSize) }

    /// Claims the first free slot for `owner`.
    public func allocate(owner: String) throws -> IDRange {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let used = Set(((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap(Int.init))
        for slot in 0..<slots where !used.contains(slot) {
            let path = "\(directory)/\(slot)"
            let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
            if fd < 0 {
                if errno == EEXIST { continue }  // taken since the listing
                throw SystemError.last("open", path)
            }
            let bytes = Array(owner.utf8)
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd)
            close(fd)
            guard written == bytes.count, synced == 0 else {
                unlink(path)
                throw SystemError.last("write", path)
            }
            return range(slot: slot)
        }
        throw AtollError(.resourceExhausted, "all \(slots) id ranges in \(directory) are in use")
    }

    /// Releases `range` if `owner` holds it.
    public func release(_ range: IDRange, owner: String) throws {
        guard range.base >= start, (range.base - start) % rangeSize == 0 else { return }
        let path = "\(directory)/\((range.base - start) / rangeSize)"
        guard let holder = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        guard holder == owner else {
            throw AtollError(.internal, "id range \(range.base) is held by \(holder), not \(owner)")
        }
        guard unlink(path) == 0 || errno == ENOENT else { throw SystemError.last("unlink", path) }
    }

    /// Slot owners, for leftover checks.
    public func owners() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap {
            try? String(contentsOfFile: "\(directory)/\($0)", encoding: .utf8)
        }
    }
}
