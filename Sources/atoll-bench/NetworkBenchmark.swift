import AtollCore
import AtollLinux
import Foundation
import Glibc

/// Waits until the kernel has removed a dead namespace's veth (asynchronously), so the next
/// sample starts clean.
func waitForLinkGone(_ host: HostNetwork, _ port: String) throws {
    for _ in 0..<2000 {
        if try !host.bridgePorts("atoll0").contains(port) { return }
        usleep(1000)
    }
    throw AtollError(.timeout, "\(port) still exists 2 s after its namespace went")
}

/// Runs a program with posix_spawn (the cheapest way to start a process, so the peers are not
/// slowed down by the harness) and waits for it; a non-zero status throws.
enum Spawn {
    static func run(_ executable: String, _ arguments: [String]) throws {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw SystemError.error("posix_spawn", executable, errno: rc) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            throw AtollError(.system, "\(([executable] + arguments).joined(separator: " ")) failed with wait status \(status)")
        }
    }
}

/// A sandbox's network set-up and teardown (namespace, veth to the bridge, address, routes,
/// firewall entry), done three ways in one run, interleaved: Atoll's (netlink and libnftables in
/// process), one `ip`/`nft` process per step, and batched `ip -batch` + `nft -f`.
struct NetworkBenchmark {
    let iterations: Int
    let prefix = "atoll-bench-\(getpid())"
    var hostName: String { "\(prefix)-h" }
    var sandboxName: String { "\(prefix)-s" }
    let subnet = try! SandboxSubnet(parsing: "10.89.0.0/16")
    var rules: FirewallRules { FirewallRules(bridge: "atoll0", subnet: subnet) }

    func run() throws -> [Measurement] {
        let ip = try HostCommand.locate("ip", package: "iproute2")
        let nft = try HostCommand.locate("nft", package: "nftables")
        let nsenter = try HostCommand.locate("nsenter", package: "util-linux")
        // The host side lives in a namespace of the benchmark's, removed at the end.
        try HostCommand.run(ip, ["netns", "add", hostName])
        defer {
            _ = try? HostCommand.run(ip, ["netns", "delete", sandboxName])
            _ = try? HostCommand.run(ip, ["netns", "delete", hostName])
        }
        let hostPath = "/run/netns/\(hostName)"
        let host = try HostNetwork(namespacePath: hostPath)
        try host.ensureBridge("atoll0", gateway: subnet.gateway, prefix: 16)
        try host.nft(rules.ruleset([]))

        let entry = FirewallEntry(id: try SandboxID("bench"), slot: 2, address: subnet.address(slot: 2), policy: NetworkPolicy(allowList: ["203.0.113.0/24"]))
        let port = rules.portName(slot: 2)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try rules.add(entry).write(toFile: "\(scratch)/add.nft", atomically: true, encoding: .utf8)
        try rules.remove(slot: 2).write(toFile: "\(scratch)/remove.nft", atomically: true, encoding: .utf8)
        let address = entry.address
        let gateway = subnet.gateway
        try """
        link add \(port) type veth peer name eth0 netns \(sandboxName)
        link set \(port) master atoll0 up
        """.write(toFile: "\(scratch)/host.batch", atomically: true, encoding: .utf8)
        try """
        link set lo up
        addr add \(address)/32 dev eth0
        link set eth0 up
        route add \(gateway) dev eth0 scope link
        route add default via \(gateway) dev eth0
        """.write(toFile: "\(scratch)/sandbox.batch", atomically: true, encoding: .utf8)

        var atollUp: [Double] = []
        var atollDown: [Double] = []
        var atollFirewallDown: [Double] = []
        var stepsUp: [Double] = []
        var stepsDown: [Double] = []
        var batchUp: [Double] = []
        func time(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        }
        for _ in 0..<iterations {
            // Atoll: netlink from the shim, one libnftables transaction each way.
            var namespace: OwnedFD?
            atollUp.append(
                try time {
                    namespace = try host.createSandboxNamespace(bridge: "atoll0", hostName: port, address: address, gateway: gateway)
                    try host.nft(rules.add(entry))
                })
            var firewall = 0.0
            atollDown.append(
                try time {
                    // As a stopped sandbox's: the namespace goes (the kernel removes the veth with
                    // it), the firewall entry is removed.
                    namespace?.close()
                    firewall = try time { try host.nft(rules.remove(slot: 2)) }
                })
            atollFirewallDown.append(firewall)
            try waitForLinkGone(host, port)
            // One process per step.
            stepsUp.append(
                try time {
                    try Spawn.run(ip, ["netns", "add", sandboxName])
                    try Spawn.run(ip, ["-n", hostName, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", sandboxName])
                    try Spawn.run(ip, ["-n", hostName, "link", "set", port, "master", "atoll0", "up"])
                    try Spawn.run(ip, ["-n", sandboxName, "link", "set", "lo", "up"])
                    try Spawn.run(ip, ["-n", sandboxName, "addr", "add", "\(address)/32", "dev", "eth0"])
                    try Spawn.run(ip, ["-n", sandboxName, "link", "set", "eth0", "up"])
                    try Spawn.run(ip, ["-n", sandboxName, "route", "add", "\(gateway)", "dev", "eth0", "scope", "link"])
                    try Spawn.run(ip, ["-n", sandboxName, "route", "add", "default", "via", "\(gateway)", "dev", "eth0"])
                    try Spawn.run(nsenter, ["--net=\(hostPath)", nft, "-f", "\(scratch)/add.nft"])
                })
            stepsDown.append(
                try time {
                    try Spawn.run(ip, ["netns", "delete", sandboxName])
                    try Spawn.run(nsenter, ["--net=\(hostPath)", nft, "-f", "\(scratch)/remove.nft"])
                })
            try waitForLinkGone(host, port)
            // Batched: a namespace, one batch per side, one nft file.
            batchUp.append(
                try time {
                    try Spawn.run(ip, ["netns", "add", sandboxName])
                    try Spawn.run(ip, ["-n", hostName, "-batch", "\(scratch)/host.batch"])
                    try Spawn.run(ip, ["-n", sandboxName, "-batch", "\(scratch)/sandbox.batch"])
                    try Spawn.run(nsenter, ["--net=\(hostPath)", nft, "-f", "\(scratch)/add.nft"])
                })
            try Spawn.run(ip, ["netns", "delete", sandboxName])
            try Spawn.run(nsenter, ["--net=\(hostPath)", nft, "-f", "\(scratch)/remove.nft"])
            try waitForLinkGone(host, port)
        }
        return [
            Measurement(name: "network set-up: Atoll (netlink + libnftables, no process)", samples: atollUp),
            Measurement(name: "network set-up: one ip/nft process per step (9 processes)", samples: stepsUp),
            Measurement(name: "network set-up: ip -batch + nft -f (4 processes)", samples: batchUp),
            Measurement(name: "network teardown: Atoll", samples: atollDown),
            Measurement(name: "network teardown: Atoll, of which the firewall transaction", samples: atollFirewallDown),
            Measurement(name: "network teardown: ip netns delete + nft -f (2 processes)", samples: stepsDown),
        ]
    }
}
