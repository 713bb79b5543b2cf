import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import CRuntime
import Foundation
import Glibc
import Testing

extension SandboxTests {
    /// The sandbox's agent: what it does for execs and files, checked from the outside.
    @Suite("Agent")
    struct AgentTests {
        static let passwd = """
            root:x:0:0:root:/root:/bin/bash
            # comment
            broken line
            sandbox:x:1000:1000::/home/sandbox:/bin/bash
            worker:x:1200:1300:a worker:/srv/worker:/bin/sh
            evil:x:4294967295:0::/:/bin/sh
            """
        static let group = "root:x:0:\ndocker:x:999:sandbox,other\nsandbox:x:1000:\nworkers:x:1300:\nbad:x:70000:worker\n"

        @Test("users resolve in the sandbox's own passwd and group files: names, uids, uid:gid; unmapped ids are refused")
        func accounts() async throws {
            try await withSandbox { manager, sandbox in
                let id = sandbox.id.rawValue
                let files = try await manager.files(id, user: "root")
                try await WorkPool.shared.run {
                    try files.write("/etc/passwd", bytes: Array(Self.passwd.utf8))
                    try files.write("/etc/group", bytes: Array(Self.group.utf8))
                }
                func whoami(_ user: String) async throws -> String {
                    let r = try await manager.sh(sandbox.id, "echo $(id -u) $(id -g) $(id -G) $HOME $USER", user: user)
                    #expect(r.exitCode == 0, "\(user): \(r.stderrText)")
                    return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                #expect(try await whoami("sandbox") == "1000 1000 1000 999 /home/sandbox sandbox")
                #expect(try await whoami("0") == "0 0 0 /root root")
                #expect(try await whoami("1000") == "1000 1000 1000 999 /home/sandbox sandbox")
                #expect(try await whoami("4242:4343") == "4242 4343 4343 / 4242")
                await expectError(.notFound, containing: "does not exist in the sandbox's /etc/passwd") { try await whoami("nobody-such") }
                await expectError(.invalidArgument, containing: "outside the sandbox's ids") { try await whoami("70000") }
                await expectError(.invalidArgument, containing: "a sandbox's ids are 0 to 65535") { try await whoami("evil") }
                await expectError(.invalidArgument, containing: "group \"bad\" of user \"worker\"") { try await whoami("worker") }
                await expectError(.invalidArgument, containing: "invalid group in user \"1:x\"") { try await whoami("1:x") }
            }
        }

        @Test("an upload replaces a file only when every byte arrived: cancelled, refused or disk-full uploads change nothing")
        func atomicUploads() async throws {
            try await withSandbox(CreateParameters(resources: Resources(cpu: 1, memoryGiB: 1, diskGiB: 1))) { manager, sandbox in
                let files = try await manager.files(sandbox.id.rawValue)
                try await WorkPool.shared.run {
                    try files.write("keep.txt", bytes: Array("original".utf8))
                    // Cancelled half way (a client that hung up).
                    let upload = try files.openWrite("keep.txt")
                    try upload.write(Array(repeating: 65, count: 100_000))
                    upload.cancel()
                }
                try await eventuallyTrue("the temporary file is gone") {
                    try await manager.sh(sandbox.id, "ls -a ~ | grep -c atoll-upload || true").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
                }
                #expect(try await WorkPool.shared.run { try files.read("keep.txt") } == Array("original".utf8))
                // Exclusive: an existing file is not replaced.
                await expectError(.conflict, containing: "already exists") {
                    try await WorkPool.shared.run { try files.write("keep.txt", bytes: [1], exclusive: true) }
                }
                // The disk fills up: a clear error, the old content intact, no temporary file left.
                let big = [UInt8](repeating: 66, count: 1_300 << 20)
                await expectError(.resourceExhausted, containing: "disk is full") {
                    try await WorkPool.shared.run { try files.write("keep.txt", bytes: big) }
                }
                #expect(try await WorkPool.shared.run { try files.read("keep.txt") } == Array("original".utf8))
                let left = try await manager.sh(sandbox.id, "ls -a ~ /home/sandbox | grep -c atoll-upload || true")
                #expect(left.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            }
        }

        @Test("a stopped process is killed at its timeout through PID 1, and leaves nothing behind")
        func stoppedTimeout() async throws {
            try await withSandbox { manager, sandbox in
                let start = Date()
                let r = try await manager.sh(sandbox.id, "sleep 60 & kill -STOP $$; echo never", timeout: 1)
                #expect(r.timedOut && r.termination == .signaled(SIGKILL))
                #expect(Date().timeIntervalSince(start) < 15)
                let ps = try await manager.sh(sandbox.id, "ps -e -o comm= | sort | tr '\\n' ' '")
                #expect(ps.stdoutText == "atoll-init ps sh sort tr ", "left: \(ps.stdoutText)")
            }
        }

        @Test("when the runtime hangs up, the process group it started is killed")
        func hangUp() async throws {
            try await withSandbox { manager, sandbox in
                let directory = manager.configuration.driver.sandboxDirectory(sandbox.id)
                let pipes = try StdioPipes.make(mergeStderr: true)
                let agent = try AgentConnection.connect(directory: directory, sandbox: sandbox.id.rawValue)
                try agent.send(
                    AgentMessage(.exec, numbers: [3, 0, 1], strings: ["sandbox", "", "/bin/sh", "/bin/sh", "-c", "sleep 300 & sleep 301"]),
                    descriptors: [pipes.stdinRead.raw, pipes.stdoutWrite.raw, pipes.stdoutWrite.raw])
                let started = try agent.receive(timeout: 10, waitingFor: "the start")
                #expect(started?.kind == .started)
                try await eventuallyTrue("both sleeps run") {
                    try await manager.sh(sandbox.id, "pgrep -c sleep || true").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "2"
                }
                agent.close()
                try await eventuallyTrue("the process group is gone") {
                    try await manager.sh(sandbox.id, "pgrep -c sleep || true").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
                }
            }
        }

        @Test("the agent's socket is out of the sandbox's reach: no path to it and nothing of it inside; root's alone on the host")
        func socketReach() async throws {
            try await withSandbox { manager, sandbox in
                // Inside, there is no path to it and no abstract socket to find.
                let inside = try await manager.sh(
                    sandbox.id, "ls -la / /run 2>/dev/null | grep -c agent.sock; grep -c agent /proc/net/unix || true", user: "root")
                #expect(inside.stdoutText.split(separator: "\n").map(String.init) == ["0", "0"], "\(inside.stdoutText)")
                // The socket on the host is root's alone.
                var st = stat()
                let path = "\(manager.configuration.driver.sandboxDirectory(sandbox.id))/\(AgentConnection.socketName)"
                #expect(stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK)
                #expect(stat(manager.configuration.driver.sandboxDirectory(sandbox.id), &st) == 0 && st.st_mode & 0o077 == 0)
            }
        }
    }
}

/// Polls `condition` for up to ten seconds.
func eventuallyTrue(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<100 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("never happened: \(what)", sourceLocation: sourceLocation)
}
