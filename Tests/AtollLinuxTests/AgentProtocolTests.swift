import AtollCore
import CRuntime
import Glibc
import Testing

@testable import AtollLinux

@Suite("the sandbox agent's protocol, as the runtime speaks it")
struct AgentProtocolTests {
    @Test("messages round-trip: kind, numbers (negative and 64-bit included), strings (empty and UTF-8 included)")
    func roundTrip() throws {
        let message = AgentMessage(.exec, numbers: [3, -1, Int64.max, Int64.min], strings: ["root", "", "/bin/sh", "héllo wörld"])
        let bytes = try message.encode()
        #expect(bytes.count == 16 + 4 * 8 + "root".utf8.count + 1 + 1 + 8 + "héllo wörld".utf8.count + 1)
        #expect(Array(bytes.prefix(4)) == [0x41, 0x47, 0x54, 0x31], "magic AGT1")
        #expect(try AgentMessage.decode(bytes) == message)
        #expect(try AgentMessage.decode(try AgentMessage(.done).encode()) == AgentMessage(.done))
    }

    @Test("what comes from a sandbox is checked before it is read: every inconsistency is refused, never trusted")
    func untrustedInput() throws {
        let good = try AgentMessage(.entry, numbers: [1, 2], strings: ["a", "b"]).encode()
        func mutated(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes = good
            change(&bytes)
            return bytes
        }
        let bad: [(String, [UInt8])] = [
            ("short", Array(good.prefix(10))),
            ("magic", mutated { $0[0] = 0 }),
            ("length", mutated { $0[12] = 200 }),
            ("numbers beyond the end", mutated { $0[6] = 0xFF }),
            (
                "strings beyond the end",
                mutated {
                    $0[8] = 0xFF
                    $0[9] = 0xFF
                }
            ),
            ("unterminated string", mutated { $0[$0.count - 1] = 65 }),
            ("trailing bytes", good + [0]),
            ("one string fewer than said", mutated { $0[8] = 1 }),
        ]
        for (what, bytes) in bad {
            #expect(throws: AtollError.self, "\(what)") { _ = try AgentMessage.decode(bytes) }
        }
        #expect(throws: AtollError.self) { _ = try AgentMessage(.file, strings: ["a\u{0}b"]).encode() }
        #expect(throws: AtollError.self) { _ = try AgentMessage(.exec, strings: [String(repeating: "x", count: AgentMessage.maximumSize)]).encode() }
    }

    @Test("the agent's failures become errors that name the path inside the sandbox and keep their meaning")
    func failures() {
        func error(_ err: Int32, _ call: String, _ path: String, _ detail: String = "", files: Bool = true) -> AtollError {
            AgentFailure.error(AgentMessage(.error, numbers: [Int64(err)], strings: [call, path, detail]), fileSemantics: files)
        }
        #expect(error(ENOENT, "open", "/x") == AtollError(.notFound, "/x: no such file or directory"))
        #expect(error(EACCES, "open", "/proc/slabinfo").code == .forbidden)
        #expect(error(ENOSPC, "write", "/big", "the sandbox's disk is full") == AtollError(.resourceExhausted, "/big: the sandbox's disk is full"))
        #expect(error(EEXIST, "write", "/x").code == .conflict)
        #expect(error(ENOENT, "execve", "nosuch", files: false).message == "execve(nosuch): No such file or directory (ENOENT)")
        let user = error(EINVAL, "resolve user", "/etc/passwd", "user \"root\" has uid 4294967295 in /etc/passwd; a sandbox's ids are 0 to 65535")
        #expect(user.code == .invalidArgument && user.message.hasPrefix("user \"root\" has uid 4294967295"))
        #expect(error(ENOENT, "resolve user", "/etc/passwd", "user \"x\" does not exist").code == .notFound)
    }

    @Test("the protocol's constants agree between the header, the init and Swift")
    func constants() {
        #expect(ATOLL_INIT_LISTENER_FD == ATOLL_AGENT_CONNECTION_FD)
        #expect(AgentMessage.Kind.exit.rawValue == 22 && AgentMessage.Kind.signal.rawValue == 10)
        #expect(ATOLL_AGENT_READY_SIGNAL >= 34 && ATOLL_AGENT_READY_SIGNAL <= 64, "a real-time signal: each one queues, with its sender")
        #expect(MemoryLayout<atoll_agent_header>.size == 16)
    }

    @Test("the embedded agent is a static executable")
    func agentBinary() {
        let bytes = AgentBinary.bytes
        #expect(bytes.count > 10_000 && bytes.count < 4 << 20)
        expectStaticELF(bytes)
    }

    @Test("a secret in argv or the environment is blanked where /proc shows it")
    func scrubbing() throws {
        setenv("ATOLL_TEST_SECRET", "s3cr3t-value", 1)
        #expect(SecretScrubbing.takeEnvironment("ATOLL_TEST_SECRET") == "s3cr3t-value")
        #expect(getenv("ATOLL_TEST_SECRET") == nil)
        #expect(SecretScrubbing.takeEnvironment("ATOLL_TEST_SECRET") == nil)
        // The test binary's own argv has no such flag: nothing is touched.
        let before = String(decoding: (try? KernelFile.read("/proc/self/cmdline"))?.utf8 ?? "".utf8, as: UTF8.self)
        #expect(!SecretScrubbing.scrubArguments(["--no-such-secret-flag"]))
        #expect(String(decoding: (try? KernelFile.read("/proc/self/cmdline"))?.utf8 ?? "".utf8, as: UTF8.self) == before)
    }
}
