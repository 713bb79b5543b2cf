import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollStore
import AtollTestSupport
import Foundation
import Testing

extension SandboxTests {
    /// Issue 7: a sandbox from the warm pool is as isolated and as fresh as one built cold.
    @Suite("Warm pool")
    struct WarmPoolHostTests {
        /// A test runner keeping `size` members of the default key.
        func withPool<T>(size: Int, _ body: (SandboxManager) async throws -> T) async throws -> T {
            var configuration = try TestRuntime.configuration()
            configuration.warmPool = .defaultKey(size: size, pidsMax: configuration.pidsMax)
            let manager = try await SandboxManager.open(configuration: configuration)
            do {
                await manager.startWarmPool()
                try await manager.waitForWarmPool(timeout: 60)
                let value = try await body(manager)
                await TestRuntime.cleanUp(configuration, manager: manager)
                return value
            } catch {
                await TestRuntime.cleanUp(configuration, manager: manager)
                throw error
            }
        }

        /// What a sandbox looks like from inside, with its own id and id range taken out so two
        /// sandboxes can be compared: profile (capabilities, no_new_privs, seccomp), processes,
        /// mounts, the writable places, the environment and the identity.
        static let probe = """
            id=$(hostname)
            echo "hostname-is-id: $([ "$id" = "$SANDBOX_ID" ] && echo yes || echo "no: $id")"
            grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
            n=0; for p in /proc/[0-9]*; do n=$((n + 1)); done; echo "processes: $n"  # built-ins: no children counted
            echo "pid1: $(tr '\\0' ' ' < /proc/1/cmdline | cut -c1-40)"
            awk '{print $2, $3}' /proc/self/mounts | sort
            echo "files:"; find /tmp /var/tmp /home /root /dev/shm -xdev -mindepth 1 2>/dev/null | sort
            echo "env:"; env | grep -vE '^(SANDBOX_ID|HOSTNAME|PWD|SHLVL|_)=' | sort
            echo "whoami: $(id)"
            echo "uid_map: $(awk '{print $1, $3}' /proc/self/uid_map)"
            echo "disk: $(df -B1M --output=size / | tail -1)"
            """

        func look(_ manager: SandboxManager, _ sandbox: Sandbox) async throws -> String {
            let result = try await manager.sh(sandbox.id, Self.probe, env: ["SANDBOX_ID": sandbox.id.rawValue])
            #expect(result.exitCode == 0, "\(result.stderrText)")
            return result.stdoutText
        }

        @Test("a claimed sandbox matches a cold one from inside, gets what the create asked for, and nothing of an earlier claim")
        func freshAndIsolated() async throws {
            try await withPool(size: 1) { manager in
                let members = Set(try manager.database.poolMembers().map(\.id))
                #expect(try await manager.list().isEmpty, "pool members are not listed")
                let cold = try await manager.create(CreateParameters(name: "cold", env: ["GREETING": "hi"], id: SandboxID.random()))
                let warm = try await manager.create(CreateParameters(name: "warm", env: ["GREETING": "hi"]))
                #expect(members.contains(warm.id.rawValue), "the second create was served from the pool")
                #expect(!members.contains(cold.id.rawValue))
                #expect(warm.ids.base != cold.ids.base, "each has its own id range")
                let coldView = try await look(manager, cold)
                let warmView = try await look(manager, warm)
                #expect(warmView == coldView, "a pooled sandbox looks exactly like a cold one from inside")
                #expect(warmView.contains("hostname-is-id: yes") && warmView.contains("GREETING=hi"))
                #expect(warmView.contains("Seccomp:\t2") && warmView.contains("NoNewPrivs:\t1"))
                #expect(Set(try await manager.list().map(\.name)) == ["cold", "warm"])

                // Leave traces in the claimed sandbox, delete it, claim the next member.
                _ = try await manager.sh(warm.id, "echo secret > /tmp/left; echo secret > ~/left; sleep 300 >/dev/null 2>&1 &")
                _ = try await manager.delete("warm")
                try await manager.waitForWarmPool(timeout: 60)
                let next = try await manager.create(CreateParameters(name: "next", env: ["GREETING": "hi"]))
                #expect(next.id != warm.id)
                let nextView = try await look(manager, next)
                #expect(nextView == coldView, "nothing of the earlier claim: no files, no processes")
                let status = try #require(try await manager.warmPoolStatus().first)
                #expect(status.claims == 2)
            }
        }
    }
}
