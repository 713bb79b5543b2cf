import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Foundation
import Glibc
import Testing

extension SandboxTests {
    /// Exec semantics: exit codes, signals, timeouts, environment, working directory, user, streams.
    @Suite("Exec")
    struct ExecTests {
        @Test("exit codes, signals and output streams")
        func exitAndSignals() async throws {
            try await withSandbox { manager, sandbox in
                let three = try await manager.sh(sandbox.id, "echo out; echo err >&2; exit 3")
                #expect(three.termination == .exited(3))
                #expect(three.stdoutText == "out\n")
                #expect(three.stderrText == "err\n")
                let killed = try await manager.sh(sandbox.id, "kill -TERM $$")
                #expect(killed.termination == .signaled(SIGTERM))
                #expect(killed.exitCode == 128 + SIGTERM)
                let merged = try await manager.exec(
                    sandbox.id.rawValue, ExecRequest(command: .argv(["/bin/sh", "-c", "echo a; echo b >&2; echo c"]), mergeOutput: true))
                #expect(merged.stdoutText == "a\nb\nc\n")
                #expect(merged.stderr.isEmpty)
            }
        }

        @Test("a timeout kills the whole process group and is reported as a timeout")
        func timeout() async throws {
            try await withSandbox { manager, sandbox in
                let start = Monotonic.now()
                let result = try await manager.sh(sandbox.id, "sleep 300 & sleep 300; echo never", timeout: 0.5)
                #expect(result.timedOut)
                #expect(result.termination == .signaled(SIGKILL))
                #expect(Monotonic.now() - start < 5)
                let left = try await manager.sh(sandbox.id, "pgrep -c sleep || true")
                #expect(left.stdoutText == "0\n", "the background sleep belongs to the group and is gone too")
            }
        }

        @Test("environment, working directory and user")
        func environmentCwdUser() async throws {
            try await withSandbox(CreateParameters(env: ["SANDBOX_WIDE": "yes", "OVERRIDE": "sandbox"])) { manager, sandbox in
                let defaults = try await manager.sh(sandbox.id, "pwd; id -un; umask; echo $HOME $USER $SANDBOX_WIDE $OVERRIDE $PATH")
                #expect(defaults.stdoutText == "/home/sandbox\nsandbox\n0022\n/home/sandbox sandbox yes sandbox \(ExecDefaults.path)\n")
                let custom = try await manager.exec(
                    sandbox.id.rawValue,
                    ExecRequest(
                        command: .argv(["sh", "-c", "pwd; id -u; echo $OVERRIDE $EXTRA"]), env: ["OVERRIDE": "request", "EXTRA": "a b"],
                        cwd: "/tmp", user: "root"
                    ))
                #expect(custom.stdoutText == "/tmp\n0\nrequest a b\n")
                _ = try await manager.sh(sandbox.id, "mkdir -p ~/sub")
                let relative = try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["pwd"]), cwd: "sub"))
                #expect(relative.stdoutText == "/home/sandbox/sub\n", "a relative cwd is relative to the home directory")
                let numeric = try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["id"]), user: "1234:1234"))
                #expect(numeric.stdoutText.hasPrefix("uid=1234 gid=1234"))
            }
        }

        @Test("stdin is fed to the process")
        func stdin() async throws {
            try await withSandbox { manager, sandbox in
                let payload = String(repeating: "line of input\n", count: 20000)  // larger than a pipe buffer
                let result = try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["wc", "-l"]), stdin: .bytes(Array(payload.utf8))))
                #expect(result.stdoutText == "20000\n")
            }
        }

        @Test("bad requests are refused with an error naming the problem")
        func badRequests() async throws {
            try await withSandbox { manager, sandbox in
                await expectError(.invalidArgument, containing: "BAD-KEY") {
                    try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["true"]), env: ["BAD-KEY": "x"]))
                }
                await expectError(.notFound, containing: "/no/such/program") {
                    try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["/no/such/program"])))
                }
                await expectError(.notFound, containing: "/no/such/dir") {
                    try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["true"]), cwd: "/no/such/dir"))
                }
                await expectError(.notFound, containing: "nobody-here") {
                    try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["true"]), user: "nobody-here"))
                }
                await expectError(.invalidArgument, containing: "timeout") {
                    try await manager.exec(sandbox.id.rawValue, ExecRequest(command: .argv(["true"]), timeout: -1))
                }
                await expectError(.notFound, containing: "not found") {
                    try await manager.sh(try SandboxID("no-such-sandbox"), "true")
                }
                let still = try await manager.sh(sandbox.id, "echo fine")
                #expect(still.stdoutText == "fine\n")
            }
        }

        @Test("several execs run at the same time")
        func concurrentExecs() async throws {
            try await withSandbox { manager, sandbox in
                let start = Monotonic.now()
                try await withThrowingTaskGroup(of: ExecResult.self) { group in
                    for i in 0..<4 { group.addTask { try await manager.sh(sandbox.id, "sleep 1; echo \(i)") } }
                    var outputs: [String] = []
                    for try await result in group { outputs.append(result.stdoutText) }
                    #expect(outputs.sorted() == ["0\n", "1\n", "2\n", "3\n"])
                }
                #expect(Monotonic.now() - start < 3.5, "execs must not run one after the other")
            }
        }
    }
}
