public import AtollCore

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

    /// The host id for sandbox id `inside`. An id the range does not map (a uid a sandbox wrote
    /// into its own /etc/passwd, say) is an error, never an overflow or a wrap into another range.
    public func host(_ inside: UInt32) throws(AtollError) -> UInt32 {
        guard inside < count else { throw AtollError(.invalidArgument, "id \(inside) is outside the sandbox's ids (0 to \(count - 1))") }
        let (sum, overflow) = base.addingReportingOverflow(inside)
        guard !overflow else { throw AtollError(.internal, "the id range at \(base) does not fit in 32 bits") }
        return sum
    }

    public func contains(hostID: UInt32) -> Bool {
        hostID >= base && UInt64(hostID) < UInt64(base) + UInt64(count)
    }
}
