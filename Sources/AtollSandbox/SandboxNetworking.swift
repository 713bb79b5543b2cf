public import AtollCore
public import AtollLinux
import Foundation
import Glibc

/// How sandboxes are networked.
public struct NetworkSettings: Sendable, Hashable {
    /// The bridge every sandbox's link joins; it holds the subnet's gateway address.
    public var bridge: String
    public var subnet: SandboxSubnet
    /// The network namespace that plays the host, by path; nil for the process's own. Test
    /// harnesses point this at a namespace of their own, so the real host is never touched.
    public var namespacePath: String?

    public static let defaultBridge = "atoll0"
    public static let defaultSubnet = "10.89.0.0/16"

    public init(bridge: String = NetworkSettings.defaultBridge, subnet: SandboxSubnet, namespacePath: String? = nil) throws(AtollError) {
        guard !bridge.isEmpty, bridge.utf8.count < 16, bridge.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }),
            !bridge.hasPrefix(FirewallRules.defaultPortPrefix)
        else {
            throw AtollError(
                .invalidArgument,
                "bridge name \"\(bridge.prefix(32))\" must be 1-15 letters, digits, - or _ and not start with \(FirewallRules.defaultPortPrefix)")
        }
        self.bridge = bridge
        self.subnet = subnet
        self.namespacePath = namespacePath
    }

    /// `atoll0` on 10.89.0.0/16 in the process's own namespace.
    public static var standard: NetworkSettings {
        // The literals are valid by construction.
        try! NetworkSettings(subnet: try! SandboxSubnet(parsing: defaultSubnet))
    }
}

/// A sandbox's place on the network.
public struct MachineNetwork: Sendable, Hashable {
    public var address: IPv4Address
    public var policy: NetworkPolicy

    public init(address: IPv4Address, policy: NetworkPolicy) {
        self.address = address
        self.policy = policy
    }
}

/// The host side of sandbox networking: the bridge, each sandbox's namespace and link, and the
/// firewall. Changes are serialised across threads and processes by a lock file, so the ruleset
/// rebuilt from the database at start-up never races a sandbox being started by another process.
public final class SandboxNetworking: Sendable {
    public let settings: NetworkSettings
    public let host: HostNetwork
    public let rules: FirewallRules
    let lockPath: String

    public init(settings: NetworkSettings, lockPath: String) throws {
        self.settings = settings
        self.host = try HostNetwork(namespacePath: settings.namespacePath)
        self.rules = FirewallRules(bridge: settings.bridge, subnet: settings.subnet)
        self.lockPath = lockPath
    }

    /// Brings the host side up and makes the firewall and the bridge's ports match `current()`
    /// exactly (read under the lock): the ruleset is replaced in one transaction and ports of
    /// sandboxes that are gone are deleted. Idempotent. Returns what it changed on the host that an
    /// operator should know about (for the log).
    public func prepare(current: () throws -> [FirewallEntry]) throws -> [String] {
        try withLock {
            var notes: [String] = []
            let subnet = settings.subnet
            try host.ensureBridge(settings.bridge, gateway: subnet.gateway, prefix: subnet.cidr.prefix)
            // Routing between the bridge and the uplink needs forwarding; the host had it off.
            if try host.sysctl("net/ipv4/ip_forward", set: "1") != "1" {
                notes.append("enabled IPv4 forwarding (net.ipv4.ip_forward=1) for sandbox networking\(location)")
            }
            let entries = try current()
            try host.nft(rules.ruleset(entries))
            let live = Set(entries.map(\.slot))
            for port in try host.bridgePorts(settings.bridge) {
                guard let slot = rules.slot(ofPort: port), !live.contains(slot) else { continue }
                if try host.deleteLink(port) { notes.append("removed the link \(port) of a sandbox that is no longer running") }
            }
            return notes
        }
    }

    /// Makes the sandbox's network namespace, linked and addressed, with its firewall entry.
    /// The caller joins the returned namespace and closes it.
    public func attach(_ entry: FirewallEntry) throws -> OwnedFD {
        try withLock {
            let subnet = settings.subnet
            try host.ensureBridge(settings.bridge, gateway: subnet.gateway, prefix: subnet.cidr.prefix)
            let namespace = try host.createSandboxNamespace(
                bridge: settings.bridge, hostName: rules.portName(slot: entry.slot), address: entry.address, gateway: subnet.gateway)
            do {
                try host.nft(rules.add(entry))
            } catch {
                _ = try? host.deleteLink(rules.portName(slot: entry.slot))
                throw error
            }
            return namespace
        }
    }

    /// Removes the sandbox's firewall entry (it may already be gone). Its link is not deleted
    /// here: the veth pair belongs to the sandbox's namespace, which the kernel tears down, link
    /// included, once the sandbox's last process is gone. Deleting it synchronously would wait
    /// for an RCU grace period (~20 ms); a port without its entry passes nothing meanwhile, and a
    /// restart of the same sandbox replaces a link that is still there.
    public func detach(slot: Int) throws {
        try withLock { try host.nft(rules.remove(slot: slot)) }
    }

    /// Replaces a running sandbox's policy, at once. `current` is read under the lock, so of two
    /// concurrent changes the later one wins; nil (no longer running) changes nothing.
    public func update(current: () throws -> FirewallEntry?) throws {
        try withLock {
            if let entry = try current() { try host.nft(rules.add(entry)) }
        }
    }

    var location: String { settings.namespacePath.map { " in the network namespace \($0)" } ?? "" }

    func withLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.last("open", lockPath) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw SystemError.last("flock", lockPath) }
        }
        return try body()
    }
}
