import AtollCore
import Testing

@Suite("domain: IPv4 addresses, subnets and network policies")
struct NetworkDomainTests {
    @Test(
        "addresses and CIDRs parse strictly",
        arguments: [
            ("10.0.0.0/8", true), ("192.168.1.7/24", true), ("0.0.0.0/0", true), ("1.2.3.4/32", true),
            ("10.0.0.0/33", false), ("10.0.0/8", false), ("10.0.0.0", false), ("10.0.0.256/8", false), ("10.0.0.0/-1", false),
            ("10.0.0.0/+8", false), (" 10.0.0.0/8", false), ("10.0.0.0/8/8", false), ("a.b.c.d/8", false), ("10.0.0.0/", false),
            ("1e1.0.0.0/8", false), ("10..0.0/8", false), ("١٠.0.0.0/8", false),
        ])
    func cidrs(text: String, valid: Bool) {
        #expect((IPv4CIDR(text) != nil) == valid, "\(text)")
    }

    @Test("a CIDR normalises to its network and knows what it contains")
    func cidrMath() throws {
        let cidr = try #require(IPv4CIDR("10.1.2.3/8"))
        #expect(cidr.description == "10.0.0.0/8")
        #expect(cidr.contains(try #require(IPv4Address("10.255.0.1"))))
        #expect(!cidr.contains(try #require(IPv4Address("11.0.0.0"))))
        #expect(try #require(IPv4CIDR("0.0.0.0/0")).contains(try #require(IPv4Address("203.0.113.9"))))
        #expect(IPv4Address(0xC633_6401).description == "198.51.100.1")
    }

    @Test("the sandbox subnet: gateway first, slots in between, prefix /16 to /29")
    func subnet() throws {
        let subnet = try SandboxSubnet(parsing: "10.89.0.0/16")
        #expect(subnet.gateway.description == "10.89.0.1")
        #expect(subnet.slots == 2...65534)
        #expect(subnet.address(slot: 2).description == "10.89.0.2")
        #expect(subnet.slot(of: try #require(IPv4Address("10.89.1.0"))) == 256)
        #expect(subnet.slot(of: try #require(IPv4Address("10.89.0.1"))) == nil, "the gateway is no sandbox's")
        #expect(subnet.slot(of: try #require(IPv4Address("10.89.255.255"))) == nil, "broadcast")
        #expect(subnet.slot(of: try #require(IPv4Address("10.90.0.2"))) == nil)
        #expect(try SandboxSubnet(parsing: "192.168.7.0/29").slots == 2...6)
        #expect(throws: AtollError.self) { try SandboxSubnet(parsing: "10.0.0.0/8") }
        #expect(throws: AtollError.self) { try SandboxSubnet(parsing: "10.0.0.0/30") }
        #expect(throws: AtollError.self) { try SandboxSubnet(parsing: "10.0.0.0") }
    }

    @Test("network settings updates follow the SDK's documented meaning")
    func updates() throws {
        #expect(try NetworkPolicy.forUpdate(blockAll: true, allowList: nil, domainAllowList: nil) == NetworkPolicy(blockAll: true))
        #expect(try NetworkPolicy.forUpdate(blockAll: true, allowList: "", domainAllowList: "") == NetworkPolicy(blockAll: true))
        #expect(try NetworkPolicy.forUpdate(blockAll: false, allowList: nil, domainAllowList: nil) == .open)
        #expect(
            try NetworkPolicy.forUpdate(blockAll: nil, allowList: "10.0.0.0/8,192.168.0.0/16", domainAllowList: nil)
                == NetworkPolicy(allowList: ["10.0.0.0/8", "192.168.0.0/16"]))
        #expect(try NetworkPolicy.forUpdate(blockAll: false, allowList: "10.0.0.0/8", domainAllowList: nil) == NetworkPolicy(allowList: ["10.0.0.0/8"]))
        #expect(try NetworkPolicy.forUpdate(blockAll: nil, allowList: " , ", domainAllowList: nil) == .open)
        for (blockAll, allow, domains, message) in [
            (nil, nil, nil, "need networkBlockAll or networkAllowList"),
            (true, "10.0.0.0/8", nil, "choose one"),
            (nil, "10.0.0.0/8,example.com", nil, "\"example.com\" is not an IPv4 CIDR"),
            (nil, nil, "*.daytona.io", "domainAllowList is not supported"),
        ] as [(Bool?, String?, String?, String)] {
            #expect {
                try NetworkPolicy.forUpdate(blockAll: blockAll, allowList: allow, domainAllowList: domains)
            } throws: { ($0 as? AtollError)?.code == .invalidArgument && "\($0)".contains(message) }
        }
        #expect(NetworkPolicy(blockAll: false, allowListText: "10.0.0.0/8,1.2.3.4/32").allowList == ["10.0.0.0/8", "1.2.3.4/32"])
    }
}
