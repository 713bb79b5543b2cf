import Foundation

/// The automated lifecycle of a sandbox, in minutes, with Daytona's meanings.
public struct LifecycleIntervals: Sendable, Hashable, Codable {
    /// Stop after this many minutes without activity; 0 = never.
    public var autoStop: Int
    /// Archive after this many minutes stopped; 0 = the maximum (30 days).
    public var autoArchive: Int
    /// Delete after this many minutes stopped; -1 = never, 0 = as soon as it stops.
    public var autoDelete: Int

    public init(autoStop: Int = 15, autoArchive: Int = 7 * 24 * 60, autoDelete: Int = -1) {
        self.autoStop = autoStop
        self.autoArchive = autoArchive
        self.autoDelete = autoDelete
    }

    /// Daytona's defaults: stop after 15 minutes, archive after 7 days, never delete.
    public static let defaults = LifecycleIntervals()

    /// The longest auto-archive interval, also what 0 means: 30 days.
    public static let maximumAutoArchive = 30 * 24 * 60

    /// Ephemeral sandboxes are deleted as soon as they stop.
    public var isEphemeral: Bool { autoDelete == 0 }

    /// The auto-archive interval in effect (0 means the maximum).
    public var effectiveAutoArchive: Int { autoArchive == 0 ? Self.maximumAutoArchive : min(autoArchive, Self.maximumAutoArchive) }

    public func validate() throws(AtollError) {
        try Self.checkAutoStop(autoStop)
        try Self.checkAutoArchive(autoArchive)
        try Self.checkAutoDelete(autoDelete)
    }

    public static func checkAutoStop(_ minutes: Int) throws(AtollError) { try checkNeverOrMinutes(minutes, field: "autoStopInterval") }

    /// An interval where 0 means never: at most ten years (auto-stop, auto-pause, a TTL).
    public static func checkNeverOrMinutes(_ minutes: Int, field: String) throws(AtollError) {
        guard minutes >= 0 && minutes <= 10 * 365 * 24 * 60 else {
            throw AtollError(.invalidArgument, "\(field) must be 0 (never) or a number of minutes, got \(minutes)")
        }
    }

    public static func checkAutoArchive(_ minutes: Int) throws(AtollError) {
        guard minutes >= 0 && minutes <= maximumAutoArchive else {
            throw AtollError(.invalidArgument, "autoArchiveInterval must be between 0 (the maximum) and \(maximumAutoArchive) minutes, got \(minutes)")
        }
    }

    public static func checkAutoDelete(_ minutes: Int) throws(AtollError) {
        guard minutes >= -1 && minutes <= 10 * 365 * 24 * 60 else {
            throw AtollError(.invalidArgument, "autoDeleteInterval must be -1 (never), 0 (on stop) or a number of minutes, got \(minutes)")
        }
    }
}

/// Egress policy of a sandbox (enforced by the network layer).
public struct NetworkPolicy: Sendable, Hashable, Codable {
    /// No traffic leaves the sandbox (loopback only).
    public var blockAll: Bool
    /// IPv4 CIDRs the sandbox may reach; nil = open. Ignored when `blockAll`.
    public var allowList: [String]?

    public init(blockAll: Bool = false, allowList: [String]? = nil) {
        self.blockAll = blockAll
        self.allowList = allowList
    }

    public static let open = NetworkPolicy()

    /// At most this many CIDRs in an allow list.
    public static let maximumAllowListEntries = 64

    /// Parses Daytona's comma-separated `networkAllowList`; every entry must be an IPv4 CIDR.
    public static func parseAllowList(_ text: String) throws(AtollError) -> [String] {
        let entries = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard entries.count <= maximumAllowListEntries else {
            throw AtollError(.invalidArgument, "networkAllowList has \(entries.count) entries; at most \(maximumAllowListEntries) are allowed")
        }
        for entry in entries {
            guard IPv4CIDR(entry) != nil else {
                throw AtollError(.invalidArgument, "networkAllowList: \"\(entry.prefix(64))\" is not an IPv4 CIDR such as 10.0.0.0/8")
            }
        }
        return entries
    }

    /// The wire form (comma-separated), or nil when open.
    public var allowListText: String? { allowList.map { $0.joined(separator: ",") } }

    /// From the stored form (the wire's comma-separated list).
    public init(blockAll: Bool, allowListText: String?) {
        self.init(blockAll: blockAll, allowList: allowListText.map { $0.split(separator: ",").map(String.init) })
    }

    /// The one reading of Daytona's two network fields, used by create (API and embedded CLI
    /// alike) and by network-settings updates, so they cannot drift apart:
    /// - `networkBlockAll: true` blocks everything; a non-empty allow list beside it is refused
    ///   ("choose one") rather than guessed at;
    /// - an allow list with at least one CIDR allows only those networks;
    /// - an allow list that is empty or only blanks and commas means *no* allow list: open egress
    ///   (it never silently becomes block-all, which is what `[]` would mean to the firewall).
    public static func requested(blockAll: Bool?, allowList: String?) throws(AtollError) -> NetworkPolicy {
        let entries = try allowList.map { (text) throws(AtollError) in try parseAllowList(text) } ?? []
        if blockAll == true {
            guard entries.isEmpty else {
                throw AtollError(.invalidArgument, "networkBlockAll is true and networkAllowList is not empty: choose one")
            }
            return NetworkPolicy(blockAll: true)
        }
        return entries.isEmpty ? .open : NetworkPolicy(allowList: entries)
    }

    /// Applies Daytona's network-settings update (the SDK's `update_network_settings`). The new
    /// policy depends only on the update, as the SDK documents, read by `requested` (so an empty
    /// allow list means the same here as at create). Domain allow lists are not supported:
    /// saying so beats silently letting traffic through.
    public static func forUpdate(blockAll: Bool?, allowList: String?, domainAllowList: String?) throws(AtollError) -> NetworkPolicy {
        if let domains = domainAllowList, !domains.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AtollError(.invalidArgument, "domainAllowList is not supported by Atoll: allow IPv4 networks with networkAllowList instead")
        }
        guard blockAll != nil || allowList != nil else {
            throw AtollError(.invalidArgument, "network settings need networkBlockAll or networkAllowList")
        }
        return try requested(blockAll: blockAll, allowList: allowList)
    }
}
