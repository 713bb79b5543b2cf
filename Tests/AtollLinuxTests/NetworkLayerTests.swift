import AtollCore
import AtollTestSupport
import Foundation
import Glibc
import Testing

@testable import AtollLinux

@Suite("network: firewall rules and resolver configuration (pure)")
struct FirewallRulesTests {
    let rules = FirewallRules(bridge: "atoll0", subnet: try! SandboxSubnet(parsing: "10.89.0.0/16"))
    let id = try! SandboxID("box-1")

    @Test("ports and marks come from the slot, and only Atoll's ports map back to one")
    func names() {
        #expect(rules.portName(slot: 0x2a) == "atoll-2a")
        #expect(rules.slot(ofPort: "atoll-2a") == 0x2a)
        #expect(rules.slot(ofPort: "atoll-02a") == nil, "not a name Atoll makes")
        #expect(rules.slot(ofPort: "atoll0") == nil)
        #expect(rules.slot(ofPort: "eth0") == nil)
        #expect(rules.mark(slot: 0xfffe) == "0x6174fffe")
    }

    @Test("policies: open accepts, block-all has no accept, an allow list accepts its normalised networks")
    func policies() {
        #expect(FirewallRules.policyRules(.open) == ["accept"])
        #expect(FirewallRules.policyRules(NetworkPolicy(blockAll: true, allowList: ["10.0.0.0/8"])) == [])
        #expect(
            FirewallRules.policyRules(NetworkPolicy(allowList: ["10.1.2.3/8", "192.168.1.0/24", "10.0.0.0/8"]))
                == ["ip daddr { 10.0.0.0/8, 192.168.1.0/24 } accept"])
        #expect(FirewallRules.policyRules(NetworkPolicy(allowList: [])) == [])
    }

    @Test("a sandbox's entry: anti-spoofing by port, the mark, its policy chain; adding is idempotent and removing cannot miss")
    func entries() {
        let entry = FirewallEntry(id: id, slot: 7, address: IPv4Address(0x0A59_0007), policy: NetworkPolicy(allowList: ["203.0.113.0/24"]))
        let add = rules.add(entry)
        #expect(add.contains("add rule bridge atoll port-7 arp saddr ip 10.89.0.7 accept"))
        #expect(add.contains("add rule bridge atoll port-7 ip saddr 10.89.0.7 meta mark set 0x61740007 accept"))
        #expect(add.contains("add rule bridge atoll port-7 counter drop"))
        #expect(add.contains("add element bridge atoll ports { \"atoll-7\" : goto port-7 }"))
        #expect(add.contains("flush chain inet atoll sandbox-7"))
        #expect(add.contains("add rule inet atoll sandbox-7 ip daddr { 203.0.113.0/24 } accept"))
        #expect(add.contains("add element inet atoll sandboxes { 0x61740007 : jump sandbox-7 }"))
        #expect(add.contains("comment \"sandbox box-1\""))
        let remove = rules.remove(slot: 7).split(separator: "\n").map(String.init)
        // Each delete is preceded by an add of the same thing, in the same transaction.
        for (index, line) in remove.enumerated() where line.hasPrefix("delete ") {
            let object = line.dropFirst("delete ".count).replacingOccurrences(of: " { \"atoll-7\" }", with: "").replacingOccurrences(
                of: " { 0x61740007 }", with: "")
            #expect(
                remove[..<index].contains { $0.hasPrefix("add ") && $0.contains(object.components(separatedBy: " ").prefix(3).joined(separator: " ")) },
                "\(line)")
        }
    }

    @Test("the ruleset replaces Atoll's two tables only, and names the bridge, the subnet and the gateway")
    func ruleset() {
        let text = rules.ruleset([])
        #expect(text.hasPrefix("table bridge atoll {}\ndelete table bridge atoll\ntable inet atoll {}\ndelete table inet atoll\n"))
        #expect(!text.contains("flush ruleset"))
        #expect(text.contains("ip saddr 10.89.0.0/16 oifname != \"atoll0\" masquerade"))
        #expect(text.contains("iifname \"atoll0\" ip daddr 10.89.0.0/16 ip daddr != 10.89.0.1 reject with icmpx admin-prohibited"))
        #expect(text.contains("ip daddr 169.254.0.0/16 reject with icmpx admin-prohibited"))
        #expect(text.contains("oifname \"atoll0\" icmp type redirect drop"))
        let tables = text.split(separator: "\n").filter { $0.hasPrefix("table ") }.map { $0.split(separator: " ").prefix(3).joined(separator: " ") }
        #expect(Set(tables) == ["table bridge atoll", "table inet atoll"])
    }

    @Test("resolv.conf: the host's IPv4 nameservers without loopback ones, search and options kept; systemd-resolved's upstreams as fallback")
    func resolvConf() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver fd00::1\nsearch corp.example\noptions edns0 trust-ad\n"
        #expect(ResolvConf.forSandbox(hostContents: [host]).hasSuffix("nameserver 10.255.255.53\nsearch corp.example\noptions edns0 trust-ad\n"))
        let stub = "nameserver 127.0.0.53\noptions edns0\n"
        let upstream = "nameserver 192.0.2.53\nnameserver 192.0.2.54\n"
        #expect(
            ResolvConf.forSandbox(hostContents: [stub, upstream]).hasSuffix("configuration.\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"),
            "the upstream file's own lines, not the stub's")
        let none = ResolvConf.forSandbox(hostContents: [stub, nil])
        #expect(!none.contains("nameserver") && none.contains("options edns0"))
    }
}

@Suite("network: netlink and nftables in a namespace of the test's", .privileged)
struct HostNetworkTests {
    @Test("the bridge is made once and kept; a link of that name that is not a bridge is refused by name")
    func bridge() throws {
        let namespace = try HostNetwork.makeNamespace()
        defer { namespace.close() }
        let host = try HostNetwork(namespacePath: "/proc/\(getpid())/fd/\(namespace.raw)")
        let gateway = try #require(IPv4Address("10.89.0.1"))
        try host.ensureBridge("atoll0", gateway: gateway, prefix: 16)
        try host.ensureBridge("atoll0", gateway: gateway, prefix: 16)
        #expect(try host.bridgePorts("atoll0") == [])
        let netns = try host.createSandboxNamespace(bridge: "atoll0", hostName: "atoll-2", address: try #require(IPv4Address("10.89.0.2")), gateway: gateway)
        defer { netns.close() }
        #expect(try host.bridgePorts("atoll0") == ["atoll-2"])
        // Making the same sandbox's link again replaces the old one.
        let again = try host.createSandboxNamespace(bridge: "atoll0", hostName: "atoll-2", address: try #require(IPv4Address("10.89.0.2")), gateway: gateway)
        again.close()
        #expect(try host.bridgePorts("atoll0") == ["atoll-2"])
        #expect(try host.deleteLink("atoll-2"))
        #expect(try !host.deleteLink("atoll-2"), "deleting a missing link is fine")
        #expect(try host.bridgePorts("atoll0") == [])
        #expect(try host.bridgePorts("nobridge") == [])

        let other = try HostNetwork.makeNamespace()
        defer { other.close() }
        let plain = try HostNetwork(namespacePath: "/proc/\(getpid())/fd/\(other.raw)")
        #expect { try plain.ensureBridge("lo", gateway: gateway, prefix: 16) } throws: { "\($0)".contains("is not a bridge") && "\($0)".contains("lo") }
        #expect { try plain.createSandboxNamespace(bridge: "nobridge", hostName: "atoll-3", address: gateway, gateway: gateway) } throws: {
            "\($0)".contains("nobridge")
        }
    }

    @Test("nftables errors quote nft's message; sysctls are read and written in the namespace only")
    func nftAndSysctl() throws {
        let namespace = try HostNetwork.makeNamespace()
        defer { namespace.close() }
        let host = try HostNetwork(namespacePath: "/proc/\(getpid())/fd/\(namespace.raw)")
        #expect { try host.nft("add rule inet nosuchtable nosuchchain accept") } throws: { error in
            let text = "\(error)"
            return text.contains("nftables rejected the change") && text.contains("nosuchtable")
        }
        try host.nft("add table inet probe")
        #expect(try host.nft("list tables").contains("table inet probe"))
        let hostForwarding = try KernelFile.read("/proc/sys/net/ipv4/ip_forward")
        #expect(try host.sysctl("net/ipv4/ip_forward") == "0", "a new namespace starts with forwarding off")
        #expect(try host.sysctl("net/ipv4/ip_forward", set: "1") == "0")
        #expect(try host.sysctl("net/ipv4/ip_forward") == "1")
        #expect(try KernelFile.read("/proc/sys/net/ipv4/ip_forward") == hostForwarding, "the host's own setting is untouched")
    }

    @Test("with more than 1024 descriptors held (a daemon with hundreds of sandboxes), nftables still works")
    func manyLongLivedDescriptors() throws {
        try withDescriptorLimit(above: 2100) {
            // 1100 descriptors held, as a daemon with a few hundred sandboxes does: every new one
            // this process opens is ≥ 1024. libnftables waits on its netlink socket with select(2),
            // which aborts the process for such a descriptor — unless it runs with a descriptor
            // table of its own (atoll_nft_run).
            var held: [OwnedFD] = []
            defer { held.forEach { $0.close() } }
            for _ in 0..<1100 { held.append(try OwnedFD(path: "/dev/null", flags: O_RDONLY)) }
            #expect(try #require(held.last).raw >= 1024)
            let namespace = try HostNetwork.makeNamespace()
            defer { namespace.close() }
            let host = try HostNetwork(namespacePath: "/proc/\(getpid())/fd/\(namespace.raw)")
            try host.nft("add table inet probe")
            #expect(try host.nft("list tables").contains("table inet probe"))
        }
    }
}
