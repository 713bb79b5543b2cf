import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Glibc
import Testing

/// A runner whose host is the host namespace of a `TestInternet`, with HTTP servers outside:
/// one behind the outside router (203.0.113.10:8080) and one on the router itself
/// (198.51.100.2:8080). Everything lives in namespaces the test made.
func withInternet<T>(_ body: (TestInternet, SandboxManager) async throws -> T) async throws -> T {
    let internet = try TestInternet()
    defer { internet.close() }
    let server = try TestHTTPServer(namespace: internet.outside, address: TestInternet.serverAddress, port: 8080, body: "server")
    defer { server.close() }
    let router = try TestHTTPServer(namespace: internet.outside, address: TestInternet.outsideAddress, port: 8080, body: "router")
    defer { router.close() }
    return try await withTestRuntime(hostNamespace: internet.hostPath) { manager in try await body(internet, manager) }
}

/// Connects from inside a sandbox and says what happened: `ok <body>` (the servers answer with
/// who they saw connecting), an errno name such as `EHOSTUNREACH` for a refused connection, or
/// `timeout` when packets were silently dropped.
let probeScript = """
    import errno, socket, sys
    host, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket()
    s.settimeout(float(sys.argv[4]) if len(sys.argv) > 4 else 5)
    if len(sys.argv) > 3 and sys.argv[3]:
        s.bind((sys.argv[3], 0))
    try:
        s.connect((host, port))
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print("ok", data.split(b"\\r\\n\\r\\n", 1)[1].decode())
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
    """

extension SandboxManager {
    /// What a TCP connection from the sandbox to `host`:`port` does (see `probeScript`).
    func probe(_ sandbox: Sandbox, _ host: String, _ port: Int = 8080, source: String = "", timeout: Double = 5) async throws -> String {
        let result = try await code(sandbox.id, .python, probeScript, arguments: [host, "\(port)", source, "\(timeout)"])
        #expect(result.exitCode == 0, "\(result.stderrText)")
        return result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Connects to `address`:`port` from inside the namespace `namespace` and returns the reply's
/// body, or nil when the connection fails.
func fetch(from namespace: OwnedFD, _ address: String, _ port: UInt16) throws -> String? {
    let socket = try HostNetwork.socket(in: namespace, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
    var timeout = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(socket.raw, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(socket.raw, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let connected = IPv4SocketAddress.with(address, port) { connect(socket.raw, $0, $1) }
    guard connected == 0 else { return nil }
    let request = "GET / HTTP/1.0\r\n\r\n"
    _ = request.withCString { write(socket.raw, $0, strlen($0)) }
    var reply: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(socket.raw, &buffer, buffer.count)
        if n <= 0 { break }
        reply += buffer[0..<n]
    }
    let text = String(decoding: reply, as: UTF8.self)
    return text.components(separatedBy: "\r\n\r\n").dropFirst().first
}

/// What the outside servers answer a sandbox: they see the host's uplink address.
let okServer = "ok server from \(TestInternet.uplinkAddress)"
let okRouter = "ok router from \(TestInternet.uplinkAddress)"

extension SandboxTests {
    /// Issue 3: egress policies, isolation between sandboxes and from the host, and cleanup,
    /// proven with real traffic between namespaces the tests made.
    @Suite("Network")
    struct NetworkTests {
        @Test("open reaches the outside (masqueraded behind the uplink); block-all reaches nothing; an allow list only its networks; refusals are immediate")
        func policies() async throws {
            try await withInternet { _, manager in
                let open = try await manager.create(CreateParameters())
                let blocked = try await manager.create(CreateParameters(network: NetworkPolicy(blockAll: true)))
                let allowed = try await manager.create(CreateParameters(network: NetworkPolicy(allowList: ["203.0.113.0/24"])))
                // The servers say who connected: the host's uplink address (masquerade), never
                // the sandbox's.
                #expect(try await manager.probe(open, TestInternet.serverAddress) == "ok server from \(TestInternet.uplinkAddress)")
                #expect(try await manager.probe(open, TestInternet.outsideAddress) == "ok router from \(TestInternet.uplinkAddress)")
                // Refused at once with "administratively prohibited", not left to time out: a 60 s
                // timeout would make "timeout" the answer for a silent drop.
                #expect(try await manager.probe(blocked, TestInternet.serverAddress, timeout: 60) == "EHOSTUNREACH")
                #expect(try await manager.probe(blocked, TestInternet.outsideAddress, timeout: 60) == "EHOSTUNREACH")
                #expect(try await manager.probe(allowed, TestInternet.serverAddress) == okServer)
                #expect(try await manager.probe(allowed, TestInternet.outsideAddress, timeout: 60) == "EHOSTUNREACH")
                // Block-all still has its own loopback.
                let loop = try await manager.code(
                    blocked.id, .python,
                    """
                    import socket
                    server = socket.socket(); server.bind(("127.0.0.1", 7000)); server.listen()
                    client = socket.create_connection(("127.0.0.1", 7000)); client.sendall(b"lo")
                    print(server.accept()[0].recv(2).decode())
                    """)
                #expect(loop.stdoutText == "lo\n", "\(loop.stderrText)")
            }
        }

        @Test("a running sandbox's policy changes at once, cutting connections it already has")
        func livePolicyChange() async throws {
            try await withInternet { _, manager in
                let sandbox = try await manager.create(CreateParameters())
                let id = sandbox.id.rawValue
                #expect(try await manager.probe(sandbox, TestInternet.serverAddress) == okServer)

                // A connection made while open, used after the block. (The file access object
                // holds the sandbox's root open: it goes before the sandbox stops.)
                _ = try await manager.files(id, user: "root").write(
                    "/tmp/hold.py",
                    bytes: Array(
                        """
                        import os, socket, time
                        s = socket.create_connection(("\(TestInternet.serverAddress)", 8080), timeout=5)
                        open("/tmp/hold.state", "w").write("connected")
                        while not os.path.exists("/tmp/go"):
                            time.sleep(0.05)
                        try:
                            s.settimeout(3)
                            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                            print("reply", s.recv(100))
                        except OSError as e:
                            print("cut", type(e).__name__)
                        """.utf8))
                _ = try await manager.sh(sandbox.id, "python3 /tmp/hold.py > /tmp/hold.out 2>&1 &", user: "root")
                let connected = try await manager.sh(
                    sandbox.id, "for i in $(seq 100); do [ -s /tmp/hold.state ] && break; sleep 0.05; done; cat /tmp/hold.state")
                #expect(connected.stdoutText == "connected")

                let blocked = try await manager.updateNetworkSettings(id, blockAll: true, allowList: nil)
                #expect(blocked.network == NetworkPolicy(blockAll: true))
                #expect(try await manager.get(id).network.blockAll)
                #expect(try await manager.probe(sandbox, TestInternet.serverAddress, timeout: 60) == "EHOSTUNREACH")
                let cut = try await manager.sh(
                    sandbox.id, "touch /tmp/go; for i in $(seq 200); do [ -s /tmp/hold.out ] && break; sleep 0.05; done; cat /tmp/hold.out", user: "root")
                #expect(cut.stdoutText.hasPrefix("cut "), "\(cut.stdoutText)")

                _ = try await manager.updateNetworkSettings(id, blockAll: nil, allowList: "\(TestInternet.serverAddress)/32")
                #expect(try await manager.probe(sandbox, TestInternet.serverAddress) == okServer)
                #expect(try await manager.probe(sandbox, TestInternet.outsideAddress, timeout: 60) == "EHOSTUNREACH")

                _ = try await manager.updateNetworkSettings(id, blockAll: false, allowList: nil)
                #expect(try await manager.get(id).network == .open)
                #expect(try await manager.probe(sandbox, TestInternet.outsideAddress) == okRouter)

                // A stopped sandbox keeps the new policy for its next start.
                _ = try await manager.stop(id)
                _ = try await manager.updateNetworkSettings(id, blockAll: true, allowList: nil)
                let restarted = try await manager.start(id)
                #expect(restarted.address == sandbox.address, "a sandbox keeps its address across stop and start")
                #expect(try await manager.probe(restarted, TestInternet.serverAddress, timeout: 60) == "EHOSTUNREACH")
            }
        }

        @Test("bad network settings are refused with a reason and change nothing")
        func badSettings() async throws {
            try await withInternet { _, manager in
                let sandbox = try await manager.create(CreateParameters())
                let id = sandbox.id.rawValue
                await expectError(.invalidArgument, containing: "\"10.0.0.0/33\" is not an IPv4 CIDR") {
                    try await manager.updateNetworkSettings(id, blockAll: nil, allowList: "10.0.0.0/8,10.0.0.0/33")
                }
                await expectError(.invalidArgument, containing: "domainAllowList is not supported") {
                    try await manager.updateNetworkSettings(id, blockAll: nil, allowList: nil, domainAllowList: "example.com")
                }
                await expectError(.invalidArgument, containing: "at most 64") {
                    try await manager.updateNetworkSettings(id, blockAll: nil, allowList: (0..<65).map { "10.0.\($0).0/24" }.joined(separator: ","))
                }
                await expectError(.invalidArgument, containing: "choose one") {
                    try await manager.updateNetworkSettings(id, blockAll: true, allowList: "10.0.0.0/8")
                }
                await expectError(.notFound, containing: "not found") {
                    try await manager.updateNetworkSettings("no-such-sandbox", blockAll: true, allowList: nil)
                }
                #expect(try await manager.get(id).network == .open)
                #expect(try await manager.probe(sandbox, TestInternet.serverAddress) == okServer)
            }
        }

        @Test("no sandbox reaches another sandbox, the host (bridge or uplink address) or 169.254.0.0/16; the host reaches sandboxes")
        func isolation() async throws {
            try await withInternet { internet, manager in
                let a = try await manager.create(CreateParameters())
                let b = try await manager.create(CreateParameters())
                let bAddress = try #require(b.address)
                // A service on the host, listening on every address of the host namespace.
                let hostService = try TestHTTPServer(namespace: internet.host, address: "0.0.0.0", port: 9000, body: "host")
                defer { hostService.close() }
                #expect(
                    try fetch(from: internet.outside, TestInternet.uplinkAddress, 9000) == "host from \(TestInternet.outsideAddress)",
                    "the host service answers from outside")
                // A service in sandbox b, reachable from the host.
                _ = try await manager.sh(b.id, "python3 -m http.server --bind 0.0.0.0 8000 > /dev/null 2>&1 &")
                var fromHost: String?
                for _ in 0..<100 where fromHost == nil {
                    fromHost = try fetch(from: internet.host, bAddress, 8000)
                    if fromHost == nil { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(fromHost?.contains("Directory listing") == true, "the host reaches sandbox b")
                #expect(try await manager.probe(b, "127.0.0.1", 8000).hasPrefix("ok"), "b reaches its own service")

                #expect(try await manager.probe(a, bAddress, 8000, timeout: 60) == "EHOSTUNREACH", "sandbox to sandbox")
                #expect(try await manager.probe(b, try #require(a.address), 8000, timeout: 60) == "EHOSTUNREACH", "and back")
                let gateway = try SandboxSubnet(parsing: NetworkSettings.defaultSubnet).gateway.description
                #expect(try await manager.probe(a, gateway, 9000, timeout: 60) == "EHOSTUNREACH", "the host's bridge address")
                #expect(try await manager.probe(a, TestInternet.uplinkAddress, 9000, timeout: 60) == "EHOSTUNREACH", "the host's uplink address")
                #expect(try await manager.probe(a, "169.254.169.254", 80, timeout: 60) == "EHOSTUNREACH", "cloud metadata")
                #expect(hostService.connections == 1, "only the control connection reached the host service")
            }
        }

        @Test("a spoofed source address is dropped at the sandbox's bridge port")
        func spoofing() async throws {
            try await withInternet { internet, manager in
                let sandbox = try await manager.create(CreateParameters())
                let other = try await manager.create(CreateParameters())
                let pid = try #require(sandbox.initPid)
                let netns = "/proc/\(pid)/ns/net"
                // Only host root can do this (the sandbox has no CAP_NET_ADMIN over its network
                // namespace): give the sandbox's eth0 a second address, then use it as source.
                let ip = try HostCommand.locate("ip", package: "iproute2")
                let nsenter = try HostCommand.locate("nsenter", package: "util-linux")
                let outsider = "10.89.255.250"
                try HostCommand.run(nsenter, ["--net=\(netns)", ip, "addr", "add", "\(outsider)/32", "dev", "eth0"])
                try HostCommand.run(nsenter, ["--net=\(netns)", ip, "addr", "add", "\(try #require(other.address))/32", "dev", "eth0"])
                #expect(try await manager.probe(sandbox, TestInternet.serverAddress) == okServer, "its own address works")
                #expect(try await manager.probe(sandbox, TestInternet.serverAddress, source: outsider, timeout: 3) == "timeout")
                #expect(
                    try await manager.probe(sandbox, TestInternet.serverAddress, source: other.address!, timeout: 3) == "timeout",
                    "another sandbox's address")
                // The port chain counted the dropped packets (SYN retransmissions included).
                let chain = try internet.run(
                    inHost: true, try HostCommand.locate("nft", package: "nftables"),
                    ["list", "chain", "bridge", "atoll", "port-\(String(slot(sandbox), radix: 16))"])
                let dropped =
                    chain.split(separator: "\n").first { $0.contains("counter packets") }
                    .flatMap { $0.split(separator: " ").drop { $0 != "packets" }.dropFirst().first }.flatMap { Int($0) } ?? 0
                #expect(dropped >= 2, "\(chain)")
            }
        }

        @Test("the firewall is rebuilt from the database when a runner opens: flushed rules come back, stale links go, twice gives the same")
        func rebuildOnOpen() async throws {
            let internet = try TestInternet()
            defer { internet.close() }
            let server = try TestHTTPServer(namespace: internet.outside, address: TestInternet.serverAddress, port: 8080, body: "server")
            defer { server.close() }
            let test = try await TestRuntime.make(hostNamespace: internet.hostPath)
            do {
                let open = try await test.manager.create(CreateParameters())
                let blocked = try await test.manager.create(CreateParameters(network: NetworkPolicy(blockAll: true)))
                let nft = try HostCommand.locate("nft", package: "nftables")
                let before = try internet.run(inHost: true, nft, ["-s", "list", "ruleset"])
                // Someone flushes the ruleset and leaves a link that looks like a sandbox's.
                _ = try internet.run(inHost: true, nft, ["flush", "ruleset"])
                try internet.ip(host: true, "link", "add", "atoll-fffe", "type", "veth", "peer", "name", "stray")
                try internet.ip(host: true, "link", "set", "atoll-fffe", "master", "atoll0")

                let reopened = try await SandboxManager.open(configuration: test.configuration)
                let after = try internet.run(inHost: true, nft, ["-s", "list", "ruleset"])
                #expect(after == before)
                let ports = try HostNetwork(namespacePath: internet.hostPath).bridgePorts("atoll0")
                #expect(Set(ports) == Set([open, blocked].map { FirewallRules.defaultPortPrefix + String(slot($0), radix: 16) }))
                #expect(try await reopened.probe(open, TestInternet.serverAddress) == okServer)
                #expect(try await reopened.probe(blocked, TestInternet.serverAddress, timeout: 60) == "EHOSTUNREACH")

                _ = try await SandboxManager.open(configuration: test.configuration)
                #expect(try internet.run(inHost: true, nft, ["-s", "list", "ruleset"]) == before, "idempotent")
                await reopened.close()
            } catch {
                await test.cleanUp()
                throw error
            }
            await test.cleanUp()
        }

        @Test("200 create/delete cycles leave no address, link, network namespace or rule behind")
        func cycles() async throws {
            try await withInternet { internet, manager in
                let host = try HostNetwork(namespacePath: internet.hostPath)
                let nft = try HostCommand.locate("nft", package: "nftables")
                let baseline = try internet.run(inHost: true, nft, ["-s", "list", "ruleset"])
                var leaked: [String] = []
                let policies = [NetworkPolicy.open, NetworkPolicy(blockAll: true), NetworkPolicy(allowList: ["203.0.113.0/24", "10.0.0.0/8"])]
                for cycle in 0..<200 {
                    let sandbox = try await manager.create(CreateParameters(network: policies[cycle % 3]))
                    let namespace = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(try #require(sandbox.initPid))/ns/net")
                    if cycle % 50 == 0 {
                        #expect(try host.bridgePorts("atoll0").contains(FirewallRules.defaultPortPrefix + String(slot(sandbox), radix: 16)))
                        #expect(try await manager.probe(sandbox, TestInternet.serverAddress, timeout: 60) == (cycle % 3 == 1 ? "EHOSTUNREACH" : okServer))
                    }
                    try await manager.delete(sandbox.id.rawValue)
                    // Namespace inode numbers are reused, so each one is checked right after its
                    // sandbox is gone: no process and no fd of this process may hold it.
                    if namespaceHolders().contains(namespace) { leaked.append("\(sandbox.id): \(namespace)") }
                }
                #expect(leaked.isEmpty)
                // The kernel removes a dead namespace's veth pair in the background.
                for _ in 0..<200 where try !host.bridgePorts("atoll0").isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                #expect(try host.bridgePorts("atoll0") == [])
                let links = try internet.run(inHost: true, try HostCommand.locate("ip", package: "iproute2"), ["-o", "link", "show"])
                let names = links.split(separator: "\n").map {
                    $0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).components(separatedBy: "@")[0]
                }
                #expect(Set(names) == ["lo", "uplink", "atoll0"], "\(links)")
                let ruleset = try internet.run(inHost: true, nft, ["-s", "list", "ruleset"])
                #expect(ruleset == baseline, "no per-sandbox chain or map element is left")
                #expect(!ruleset.contains("sandbox-") && !ruleset.contains("port-"))
                #expect(try await manager.list().isEmpty)
                #expect(try manager.database.all().compactMap(\.address).isEmpty, "no address is held")
            }
        }
    }
}

/// The network namespaces held by any process or by an fd of this one (`net:[inode]`).
func namespaceHolders() -> Set<String> {
    var held: Set<String> = []
    let fm = FileManager.default
    for entry in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
        if let ns = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(entry)/ns/net") { held.insert(ns) }
    }
    for fd in (try? fm.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        if let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"), target.hasPrefix("net:") { held.insert(target) }
    }
    return held
}

/// The slot of a sandbox's address on the default subnet.
func slot(_ sandbox: Sandbox) -> Int {
    (try? SandboxSubnet(parsing: NetworkSettings.defaultSubnet)).flatMap { subnet in
        sandbox.address.flatMap(IPv4Address.init).flatMap(subnet.slot(of:))
    } ?? -1
}
