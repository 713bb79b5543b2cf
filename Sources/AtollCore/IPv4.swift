/// An IPv4 address (host byte order inside).
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Parses dotted-quad notation strictly: four decimal octets, no leading sign or spaces.
    public init?(_ text: some StringProtocol) {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy({ $0.isASCII && $0.isNumber }), let byte = UInt32(octet), byte <= 255 else {
                return nil
            }
            value = value << 8 | byte
        }
        self.value = value
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv4 network in CIDR notation.
public struct IPv4CIDR: Sendable, Hashable, CustomStringConvertible {
    /// The address as written (host bits may be set: `10.1.2.3/8`).
    public var address: UInt32
    public var prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty, parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
            let prefix = Int(parts[1]), (0...32).contains(prefix), let address = IPv4Address(parts[0])
        else { return nil }
        self.address = address.value
        self.prefix = prefix
    }

    public init(network: IPv4Address, prefix: Int) {
        self.address = network.value
        self.prefix = prefix
    }

    public var mask: UInt32 { prefix == 0 ? 0 : UInt32.max << UInt32(32 - prefix) }
    /// The network address (host bits cleared).
    public var network: IPv4Address { IPv4Address(address & mask) }
    /// How many addresses the network spans.
    public var size: UInt64 { 1 << UInt64(32 - prefix) }

    public func contains(_ address: IPv4Address) -> Bool { address.value & mask == self.address & mask }

    /// Normalised form: `10.0.0.0/8` for `10.1.2.3/8`.
    public var description: String { "\(network)/\(prefix)" }
}

/// The private network sandboxes live on: the bridge holds the first host address (the gateway)
/// and each sandbox gets one of the others, identified by its slot (offset in the network).
public struct SandboxSubnet: Sendable, Hashable {
    public let cidr: IPv4CIDR

    /// Between /16 (65533 sandboxes: a slot fits the 16 bits of a firewall mark) and /29.
    public static let prefixes = 16...29

    public init(_ cidr: IPv4CIDR) throws(AtollError) {
        guard Self.prefixes.contains(cidr.prefix) else {
            throw AtollError(
                .invalidArgument, "sandbox subnet \(cidr) must have a prefix between /\(Self.prefixes.lowerBound) and /\(Self.prefixes.upperBound)")
        }
        self.cidr = cidr
    }

    public init(parsing text: String) throws(AtollError) {
        guard let cidr = IPv4CIDR(text) else {
            throw AtollError(.invalidArgument, "sandbox subnet \"\(text.prefix(64))\" is not an IPv4 CIDR such as 10.89.0.0/16")
        }
        try self.init(cidr)
    }

    /// The bridge's address.
    public var gateway: IPv4Address { IPv4Address(cidr.network.value + 1) }
    /// Slots sandboxes may use: everything but the network, gateway and broadcast addresses.
    public var slots: ClosedRange<Int> { 2...Int(cidr.size - 2) }

    public func address(slot: Int) -> IPv4Address { IPv4Address(cidr.network.value + UInt32(slot)) }

    /// The slot of an address, or nil when it is not a sandbox address of this network.
    public func slot(of address: IPv4Address) -> Int? {
        guard cidr.contains(address) else { return nil }
        let slot = Int(address.value - cidr.network.value)
        return slots.contains(slot) ? slot : nil
    }
}
