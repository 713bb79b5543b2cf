import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Foundation
import Glibc
import Testing

extension SandboxTests {
    /// The isolation profile, checked from inside real sandboxes.
    @Suite("Isolation")
    struct IsolationTests {
        @Test("PID 1 is atoll-init and no host process is visible")
        func pidNamespace() async throws {
            try await withSandbox { manager, sandbox in
                let ps = try await manager.sh(sandbox.id, "ps -e -o pid=,comm=")
                #expect(ps.exitCode == 0)
                let rows = ps.stdoutText.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
                #expect(rows.first?.map(String.init) == ["1", "atoll-init"])
                // Only init, the shell and ps itself exist in the sandbox.
                #expect(rows.count <= 3, "unexpected processes: \(ps.stdoutText)")
                let pids = try await manager.sh(sandbox.id, "ls /proc | grep -E '^[0-9]+$' | sort -n | tail -1")
                #expect(Int(pids.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 999 < 10)
                // The test process itself (on the host) does not exist in there.
                let host = try await manager.sh(sandbox.id, "test -e /proc/\(getpid())/cmdline && cat /proc/\(getpid())/cmdline; echo end")
                #expect(!host.stdoutText.contains("Test"))
            }
        }

        @Test("root inside maps to the sandbox's own unprivileged host ids")
        func userNamespace() async throws {
            try await withSandbox { manager, sandbox in
                let made = try await manager.sh(sandbox.id, "touch /root-owned && mkdir -p /tmp/dir && id -u && cat /proc/self/uid_map", user: "root")
                #expect(made.exitCode == 0, "\(made.stderrText)")
                let lines = made.stdoutText.split(separator: "\n")
                #expect(lines.first == "0")
                #expect(lines.dropFirst().first?.split(separator: " ").map(String.init) == ["0", "\(sandbox.ids.base)", "65536"])
                let user = try await manager.sh(sandbox.id, "touch /tmp/user-owned")
                #expect(user.exitCode == 0)

                // Seen from the host, the files belong to the sandbox's range, not to root.
                let root = "/proc/\(sandbox.initPid!)/root"
                var st = stat()
                #expect(stat("\(root)/root-owned", &st) == 0)
                #expect(st.st_uid == sandbox.ids.base && st.st_gid == sandbox.ids.base)
                #expect(stat("\(root)/tmp/user-owned", &st) == 0)
                #expect(st.st_uid == sandbox.ids.base + 1000)
                #expect(sandbox.ids.base >= 65536, "the range must not overlap host system ids")
            }
        }

        @Test("mount, ptrace, module loading, keyrings, namespaces and /proc/sys writes are refused")
        func denials() async throws {
            try await withSandbox { manager, sandbox in
                for user in ["root", "sandbox"] {
                    let result = try await manager.code(sandbox.id, .python, Probes.denials, arguments: [sandbox.id.rawValue], user: user, timeout: 60)
                    #expect(result.exitCode == 0, "probe failed as \(user): \(result.stderrText)")
                    let decoded = try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: [Int]]
                    let outcomes = try #require(decoded, "probe output: \(result.stdoutText)")
                    #expect(outcomes.count == 18)
                    for (name, outcome) in outcomes.sorted(by: { $0.key < $1.key }) {
                        #expect(outcome[0] == -1, "\(name) succeeded as \(user) inside the sandbox")
                        #expect([EPERM, EACCES, EROFS].contains(Int32(outcome[1])), "\(name) as \(user): errno \(outcome[1])")
                    }
                    // The ones the seccomp profile answers itself give exactly EPERM.
                    for name in ["mount", "ptrace_init", "ptrace_nonchild", "init_module", "finit_module", "keyctl", "add_key", "bpf", "unshare_user"] {
                        #expect(outcomes[name]?[1] == Int(EPERM), "\(name) as \(user): \(outcomes[name] ?? [])")
                    }
                    #expect(outcomes["write /proc/sys/kernel/hostname"]?[1] == Int(EROFS))
                }
                // Nothing changed: the hostname is still the sandbox id.
                let name = try await manager.sh(sandbox.id, "hostname")
                #expect(name.stdoutText == "\(sandbox.id)\n")
            }
        }

        @Test("a denial probe refuses to run anywhere but in the sandbox it was meant for")
        func probeGuard() async throws {
            try await withSandbox { manager, sandbox in
                let result = try await manager.code(sandbox.id, .python, Probes.denials, arguments: ["some-other-host"], user: "root")
                #expect(result.exitCode == 99)
                #expect(result.stdoutText.hasPrefix("REFUSE"))
            }
        }

        @Test("masked and read-only paths")
        func maskedPaths() async throws {
            try await withSandbox { manager, sandbox in
                let result = try await manager.sh(
                    sandbox.id,
                    """
                    wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; ls -A /proc/acpi 2>/dev/null | wc -l
                    grep -E ' /proc/sys | /sys ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1
                    """, user: "root")
                #expect(result.exitCode == 0, "\(result.stderrText)")
                let lines = result.stdoutText.split(separator: "\n").map(String.init)
                #expect(lines.prefix(4) == ["0", "0", "0", "0"])
                #expect(lines.contains("/proc/sys ro"))
                #expect(lines.contains("/sys ro"))
            }
        }

        @Test("capabilities, no_new_privs and seccomp in every process")
        func credentials() async throws {
            try await withSandbox { manager, sandbox in
                let expected = try CapabilitySet.sandboxRoot().mask
                let root = try await manager.sh(sandbox.id, "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status", user: "root")
                let fields = Dictionary(
                    uniqueKeysWithValues: root.stdoutText.split(separator: "\n").map { line -> (String, String) in
                        let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                        return (parts[0], parts[1])
                    })
                #expect(UInt64(fields["CapEff"] ?? "", radix: 16) == expected)
                #expect(UInt64(fields["CapBnd"] ?? "", radix: 16) == expected)
                #expect(fields["NoNewPrivs"] == "1")
                #expect(fields["Seccomp"] == "2")
                let user = try await manager.sh(sandbox.id, "grep -E '^(CapEff|CapPrm):' /proc/self/status | cut -f2")
                #expect(user.stdoutText == "0000000000000000\n0000000000000000\n")
                let initStatus = try await manager.sh(sandbox.id, "grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status | cut -f2", user: "root")
                #expect(initStatus.stdoutText == "1\n2\n", "init runs under the same profile")
            }
        }

        @Test("system calls through a foreign ABI kill the process", arguments: ["i386", "x32"])
        func foreignABI(abi: String) async throws {
            try await withSandbox { manager, sandbox in
                let result = try await manager.code(sandbox.id, .python, Probes.foreignABI, arguments: [sandbox.id.rawValue, abi])
                #expect(result.stdoutText.contains("about to call"), "\(result.stdoutText) \(result.stderrText)")
                #expect(!result.stdoutText.contains("SURVIVED"))
                #expect(result.termination == .signaled(SIGSYS))
            }
        }

        @Test("loopback works: low ports and ICMP sockets for unprivileged users, as with Docker")
        func loopback() async throws {
            try await withSandbox { manager, sandbox in
                let code = """
                    import socket
                    server = socket.socket()
                    server.bind(("127.0.0.1", 80))
                    server.listen()
                    client = socket.create_connection(("127.0.0.1", 80))
                    peer, _ = server.accept()
                    client.sendall(b"ping")
                    print(peer.recv(4).decode())
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
                    print("icmp")
                    """
                let result = try await manager.code(sandbox.id, .python, code)
                #expect(result.stdoutText == "ping\nicmp\n", "\(result.stderrText)")
            }
        }

        @Test(
            "hostname is the sandbox id; the network namespace has loopback and eth0 with the sandbox's address, a default route through the gateway, no IPv6 and the host's resolvers"
        )
        func utsAndNetwork() async throws {
            try await withSandbox { manager, sandbox in
                let names = try await manager.sh(sandbox.id, "hostname; cat /etc/hostname; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort")
                #expect(names.stdoutText == "\(sandbox.id)\n\(sandbox.id)\neth0\nlo\n")
                let code = """
                    import fcntl, socket, struct
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"eth0"))[20:24]))  # SIOCGIFADDR
                    for line in open("/proc/net/route").read().splitlines()[1:]:
                        f = line.split()
                        if f[1] == "00000000":
                            print("default via", socket.inet_ntoa(struct.pack("<I", int(f[2], 16))), "dev", f[0])
                    try:
                        print("ipv6 addresses:", len(open("/proc/net/if_inet6").read().splitlines()))
                    except FileNotFoundError:
                        print("ipv6 addresses: 0")
                    """
                let result = try await manager.code(sandbox.id, .python, code)
                let address = try #require(sandbox.address)
                let subnet = try SandboxSubnet(parsing: NetworkSettings.defaultSubnet)
                #expect(subnet.slot(of: try #require(IPv4Address(address))) != nil)
                #expect(result.stdoutText == "\(address)\ndefault via \(subnet.gateway) dev eth0\nipv6 addresses: 0\n", "\(result.stderrText)")
                let resolv = try await manager.sh(sandbox.id, "cat /etc/resolv.conf")
                #expect(resolv.stdoutText == ResolvConf.forSandbox())
            }
        }
    }
}
