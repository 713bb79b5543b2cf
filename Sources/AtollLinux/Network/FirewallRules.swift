public import AtollCore

/// One sandbox as the firewall sees it.
public struct FirewallEntry: Sendable, Hashable {
    public var id: SandboxID
    public var slot: Int
    public var address: IPv4Address
    public var policy: NetworkPolicy

    public init(id: SandboxID, slot: Int, address: IPv4Address, policy: NetworkPolicy) {
        self.id = id
        self.slot = slot
        self.address = address
        self.policy = policy
    }
}

/// Atoll's nftables ruleset, as text for libnftables. Pure: it renders, `SandboxNetworking`
/// applies.
///
/// Atoll owns two tables, both named `atoll`, and touches nothing else:
///
/// - `bridge atoll`: a sandbox is known by the bridge port its frames enter through. Its port
///   chain lets through only ARP and IPv4 from its own address (anything else, spoofed sources
///   and IPv6 included, is dropped and counted) and tags the packet with the sandbox's mark. Frames from one
///   port to another are dropped (the ports are also isolated in the bridge itself).
/// - `inet atoll`: routed traffic. Packets from the bridge are checked on every packet (so a
///   policy change also cuts existing connections): link-local addresses, other sandboxes and the
///   host itself are rejected, then the mark selects the sandbox's chain (its policy), and what
///   that chain does not accept is rejected with `admin-prohibited`, so clients fail at once.
///   Toward the bridge only replies pass. Packets from one sandbox to another are rejected
///   before routing: forwarded back out of the bridge, they would first make the kernel send an
///   ICMP redirect, which uses up the ICMP rate limit so the reject's own ICMP error would not be
///   sent and the client would hang. The host sends sandboxes no redirects at all. Sandbox traffic leaving through any other interface is
///   masqueraded.
///
/// In the `inet` family a bridged packet's input interface is the bridge, never the sandbox's
/// port, which is why the sandbox is tagged in the `bridge` family (see host-facts.md).
public struct FirewallRules: Sendable, Hashable {
    public var bridge: String
    public var subnet: SandboxSubnet
    /// Host-side link names start with this; `portName(slot:)` adds the slot in hex.
    public var portPrefix: String
    public var table: String

    /// High half of every sandbox mark ("at"); the low 16 bits are the slot.
    public static let markBase: UInt32 = 0x6174_0000

    public static let defaultPortPrefix = "atoll-"

    public init(bridge: String, subnet: SandboxSubnet, portPrefix: String = FirewallRules.defaultPortPrefix, table: String = "atoll") {
        self.bridge = bridge
        self.subnet = subnet
        self.portPrefix = portPrefix
        self.table = table
    }

    public func portName(slot: Int) -> String { portPrefix + String(slot, radix: 16) }

    /// The slot a port name stands for, or nil for links that are not Atoll ports.
    public func slot(ofPort name: String) -> Int? {
        guard name.hasPrefix(portPrefix), let slot = Int(name.dropFirst(portPrefix.count), radix: 16),
            portName(slot: slot) == name
        else { return nil }
        return slot
    }

    public func mark(slot: Int) -> String { "0x" + String(Self.markBase | UInt32(slot), radix: 16) }
    func portChain(slot: Int) -> String { "port-\(String(slot, radix: 16))" }
    func sandboxChain(slot: Int) -> String { "sandbox-\(String(slot, radix: 16))" }

    /// Replaces both tables with a fresh copy holding `entries`: one transaction, idempotent.
    public func ruleset(_ entries: [FirewallEntry]) -> String {
        let reject = "reject with icmpx admin-prohibited"
        var text = """
            table bridge \(table) {}
            delete table bridge \(table)
            table inet \(table) {}
            delete table inet \(table)
            table bridge \(table) {
                map ports { type ifname : verdict; }
                chain prerouting {
                    type filter hook prerouting priority -200; policy accept;
                    iifname != "\(portPrefix)*" accept
                    iifname vmap @ports
                    drop
                }
                chain forward {
                    type filter hook forward priority 0; policy accept;
                    iifname "\(portPrefix)*" drop
                }
            }
            table inet \(table) {
                map sandboxes { type mark : verdict; }
                chain prerouting {
                    type filter hook prerouting priority 0; policy accept;
                    iifname "\(bridge)" ip daddr \(subnet.cidr) ip daddr != \(subnet.gateway) \(reject)
                }
                chain forward {
                    type filter hook forward priority 0; policy accept;
                    iifname "\(bridge)" jump from_sandbox
                    oifname "\(bridge)" ct state established,related accept
                    oifname "\(bridge)" drop
                }
                chain from_sandbox {
                    ip daddr 169.254.0.0/16 \(reject)
                    oifname "\(bridge)" \(reject)
                    meta mark vmap @sandboxes
                    \(reject)
                }
                chain input {
                    type filter hook input priority 0; policy accept;
                    iifname "\(bridge)" ct state established,related accept
                    iifname "\(bridge)" \(reject)
                }
                chain output {
                    type filter hook output priority 0; policy accept;
                    oifname "\(bridge)" icmp type redirect drop
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr \(subnet.cidr) oifname != "\(bridge)" masquerade
                }
            }

            """
        for entry in entries { text += add(entry) }
        return text
    }

    /// Adds a sandbox or replaces its policy (idempotent: its chains are flushed and refilled).
    public func add(_ entry: FirewallEntry) -> String {
        let port = portChain(slot: entry.slot)
        let chain = sandboxChain(slot: entry.slot)
        let mark = mark(slot: entry.slot)
        var text = """
            add chain bridge \(table) \(port) { comment "sandbox \(entry.id)"; }
            flush chain bridge \(table) \(port)
            add rule bridge \(table) \(port) arp saddr ip \(entry.address) accept
            add rule bridge \(table) \(port) ip saddr \(entry.address) meta mark set \(mark) accept
            add rule bridge \(table) \(port) counter drop
            add element bridge \(table) ports { "\(portName(slot: entry.slot))" : goto \(port) }
            add chain inet \(table) \(chain) { comment "sandbox \(entry.id)"; }
            flush chain inet \(table) \(chain)

            """
        for rule in Self.policyRules(entry.policy) { text += "add rule inet \(table) \(chain) \(rule)\n" }
        text += "add element inet \(table) sandboxes { \(mark) : jump \(chain) }\n"
        return text
    }

    /// Removes a sandbox; removing one that is not there is fine (each element and chain is
    /// added first, so the delete cannot miss).
    public func remove(slot: Int) -> String {
        let port = portChain(slot: slot)
        let chain = sandboxChain(slot: slot)
        let mark = mark(slot: slot)
        return """
            add chain bridge \(table) \(port)
            flush chain bridge \(table) \(port)
            add element bridge \(table) ports { "\(portName(slot: slot))" : goto \(port) }
            delete element bridge \(table) ports { "\(portName(slot: slot))" }
            delete chain bridge \(table) \(port)
            add chain inet \(table) \(chain)
            flush chain inet \(table) \(chain)
            add element inet \(table) sandboxes { \(mark) : jump \(chain) }
            delete element inet \(table) sandboxes { \(mark) }
            delete chain inet \(table) \(chain)

            """
    }

    /// Drops both tables (nothing of Atoll's is left in the ruleset).
    public func removeAll() -> String {
        "table bridge \(table) {}\ndelete table bridge \(table)\ntable inet \(table) {}\ndelete table inet \(table)\n"
    }

    /// What a sandbox's chain holds: open accepts everything, block-all nothing (so the final
    /// reject applies), an allow list accepts its networks.
    static func policyRules(_ policy: NetworkPolicy) -> [String] {
        if policy.blockAll { return [] }
        guard let allowList = policy.allowList else { return ["accept"] }
        let networks = Set(allowList.compactMap(IPv4CIDR.init).map(\.description)).sorted()
        guard !networks.isEmpty else { return [] }
        return ["ip daddr { \(networks.joined(separator: ", ")) } accept"]
    }
}
