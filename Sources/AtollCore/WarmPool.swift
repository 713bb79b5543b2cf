import Foundation

/// What makes two sandboxes interchangeable before anyone has used them: the snapshot, the
/// resources, the default user and the task limit. Everything else a create asks for (name,
/// labels, env, intervals, network policy) is applied when a pooled sandbox is claimed.
public struct WarmPoolKey: Sendable, Hashable, Codable, CustomStringConvertible {
    public var snapshot: String
    public var resources: Resources
    public var user: String
    public var pidsMax: Int

    public init(snapshot: String = "default", resources: Resources = .defaults, user: String = "sandbox", pidsMax: Int = 4096) {
        self.snapshot = snapshot
        self.resources = resources
        self.user = user
        self.pidsMax = pidsMax
    }

    /// `SNAPSHOT/CPU/MEMORY/DISK/USER` (the task limit is the runtime's): the form configuration
    /// and the database use, e.g. `default/1/1/3/sandbox`.
    public var description: String {
        "\(snapshot)/\(resources.cpu)/\(resources.memoryGiB)/\(resources.diskGiB)/\(user)"
    }
}

/// Which warm pools to keep and how many ready sandboxes in each.
public struct WarmPoolConfiguration: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        public var key: WarmPoolKey
        public var size: Int

        public init(key: WarmPoolKey, size: Int) {
            self.key = key
            self.size = size
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// The default key (default snapshot, 1 vCPU, 1 GiB, 3 GiB, user `sandbox`) with `size` members.
    public static func defaultKey(size: Int, pidsMax: Int = 4096) -> WarmPoolConfiguration {
        WarmPoolConfiguration(entries: size > 0 ? [Entry(key: WarmPoolKey(pidsMax: pidsMax), size: size)] : [])
    }

    /// The largest pool a key may have.
    public static let maximumSize = 64

    public var isEmpty: Bool { entries.allSatisfy { $0.size == 0 } }

    /// The target size for `key` (0 when it has no pool).
    public func size(for key: WarmPoolKey) -> Int {
        entries.first { $0.key == key }?.size ?? 0
    }

    /// Parses `ATOLL_WARM_POOL`: a bare number is the default key's size (`0` turns pools off);
    /// otherwise comma-separated `SNAPSHOT/CPU/MEMORY/DISK/USER=SIZE` entries, e.g.
    /// `default/1/1/3/sandbox=4,default/2/4/10/sandbox=1`. Errors name the entry and the problem.
    public static func parse(_ text: String, pidsMax: Int, limits: ResourceLimits) throws(AtollError) -> WarmPoolConfiguration {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let size = Int(trimmed) {
            try checkSize(size, entry: trimmed)
            return defaultKey(size: size, pidsMax: pidsMax)
        }
        var entries: [Entry] = []
        for raw in trimmed.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
            let sides = raw.split(separator: "=", omittingEmptySubsequences: false)
            let fields = sides.first.map { $0.split(separator: "/", omittingEmptySubsequences: false).map(String.init) } ?? []
            guard sides.count == 2, fields.count == 5, let size = Int(sides[1]),
                let cpu = Int(fields[1]), let memory = Int(fields[2]), let disk = Int(fields[3]),
                !fields[0].isEmpty, !fields[4].isEmpty
            else {
                throw AtollError(
                    .invalidArgument, "ATOLL_WARM_POOL entry \"\(raw.prefix(80))\" is not SNAPSHOT/CPU/MEMORY/DISK/USER=SIZE (e.g. default/1/1/3/sandbox=2)")
            }
            try checkSize(size, entry: raw)
            let resources = Resources(cpu: cpu, memoryGiB: memory, diskGiB: disk)
            do { try limits.validate(resources) } catch {
                throw AtollError(.invalidArgument, "ATOLL_WARM_POOL entry \"\(raw.prefix(80))\": \(error.message)")
            }
            let key = WarmPoolKey(snapshot: fields[0], resources: resources, user: fields[4], pidsMax: pidsMax)
            guard !entries.contains(where: { $0.key == key }) else {
                throw AtollError(.invalidArgument, "ATOLL_WARM_POOL names \(key) twice")
            }
            entries.append(Entry(key: key, size: size))
        }
        return WarmPoolConfiguration(entries: entries)
    }

    static func checkSize(_ size: Int, entry: String) throws(AtollError) {
        guard (0...maximumSize).contains(size) else {
            throw AtollError(.invalidArgument, "ATOLL_WARM_POOL entry \"\(entry.prefix(80))\": a pool size must be between 0 and \(maximumSize), got \(size)")
        }
    }
}

/// Where pooled sandboxes live until claimed.
public enum WarmPool {
    /// The organization pooled sandboxes belong to: no API key can act for it (organization ids
    /// are lower-case letters, digits and '-'), so members never show up in lists or usage.
    public static let organization = "atoll:warm-pool"
    /// A member being claimed carries this prefix and the claim's token instead of its key.
    public static let claimingPrefix = "claiming:"
}
