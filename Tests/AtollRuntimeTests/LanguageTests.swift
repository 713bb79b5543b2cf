import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Glibc
import Testing

extension SandboxTests {
    /// Python, JavaScript and TypeScript programs, with the interpreters of the default snapshot.
    @Suite("Languages")
    struct LanguageTests {
        @Test("Python: output, arguments, stderr and exit code")
        func python() async throws {
            try await withSandbox { manager, sandbox in
                let code = """
                    import sys, platform
                    print("py", platform.python_version_tuple()[0], sys.argv[1:])
                    print("warn", file=sys.stderr)
                    sys.exit(3)
                    """
                let result = try await manager.code(sandbox.id, .python, code, arguments: ["a", "b c"])
                #expect(result.stdoutText == "py 3 ['a', 'b c']\n")
                #expect(result.stderrText == "warn\n")
                #expect(result.exitCode == 3)
            }
        }

        @Test("JavaScript: output, arguments and exit code")
        func javascript() async throws {
            try await withSandbox { manager, sandbox in
                let code = "console.log('js', process.argv.slice(2).join(',')); console.error('oops'); process.exit(4)"
                let result = try await manager.code(sandbox.id, .javascript, code, arguments: ["x", "y"])
                #expect(result.stdoutText == "js x,y\n")
                #expect(result.stderrText == "oops\n")
                #expect(result.exitCode == 4)
            }
        }

        @Test("TypeScript: transpiled offline, types ignored, output and exit code")
        func typescript() async throws {
            try await withSandbox { manager, sandbox in
                let code = """
                    interface Point { x: number; y: number }
                    const p: Point = { x: 40, y: 2 };
                    const sum = (q: Point): number => q.x + q.y;
                    console.log(`ts ${sum(p)} ${process.argv.slice(2).join(",")}`);
                    process.exitCode = 5;
                    """
                let result = try await manager.code(sandbox.id, .typescript, code, arguments: ["z"])
                #expect(result.stdoutText == "ts 42 z\n", "\(result.stderrText)")
                #expect(result.exitCode == 5)
                // The scratch files are gone afterwards.
                let left = try await manager.sh(sandbox.id, "ls /tmp | grep -c atoll-code || true")
                #expect(left.stdoutText == "0\n")
            }
        }

        @Test("a program's own exceptions come back as output and a non-zero exit")
        func failures() async throws {
            try await withSandbox { manager, sandbox in
                let py = try await manager.code(sandbox.id, .python, "raise ValueError('boom')")
                #expect(py.exitCode == 1)
                #expect(py.stderrText.contains("ValueError: boom"))
                let js = try await manager.code(sandbox.id, .javascript, "throw new Error('bang')")
                #expect(js.exitCode == 1)
                #expect(js.stderrText.contains("Error: bang"))
            }
        }
    }
}
