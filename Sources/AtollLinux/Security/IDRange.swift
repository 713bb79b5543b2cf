import AtollCore

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
