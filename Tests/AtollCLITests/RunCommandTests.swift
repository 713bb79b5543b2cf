import AtollLinux
import AtollTestSupport
import Foundation
import Glibc
import Testing

/// `atoll run` as a user runs it: the built binary, its exit status, its output, and the
/// sandbox gone afterwards — also after Ctrl-C. Each test gives the binary a data directory,
/// cgroup name and id region of its own.
@Suite("atoll run", .sandboxes, .serialized)
struct RunCommandTests {
    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// A data directory of the test's own, removed afterwards.
    final class Scratch {
        let dataDirectory = "/var/tmp/atoll-cli-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let cgroupName = "atoll-test-cli-\(getpid())"
        /// The network namespace that plays the host for the binary (gone with this object).
        let hostNamespace = try? HostNetwork.makeNamespace()

        var environment: [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["ATOLL_SNAPSHOTS_DIR"] = TestEnvironment.snapshotsDirectory
            env["ATOLL_CGROUP_NAME"] = cgroupName
            env["ATOLL_ID_RANGE_START"] = "\((1 << 31) + UInt32(getpid() % 64) * 16 * 65536)"
            // Never the real host's network: a namespace of the test's, or none at all.
            if let hostNamespace {
                env["ATOLL_NETNS"] = "/proc/\(getpid())/fd/\(hostNamespace.raw)"
            } else {
                // Without privileges (outside CI) the CLI runs without networking; in CI that
                // would quietly test less.
                if ProcessInfo.processInfo.environment["CI"] == "true" {
                    Issue.record("could not make a network namespace for the CLI under test")
                }
                env["ATOLL_NETWORK"] = "none"
            }
            return env
        }

        var sandboxes: [String] { (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDirectory)/sandboxes")) ?? [] }

        deinit {
            // Whatever a failed test left: processes die with their cgroups, then the files go.
            let left = sandboxes
            if let cgroups = try? CgroupLayout.hostManager(groupName: cgroupName) {
                for id in left {
                    try? cgroups.killAll(id)
                    try? cgroups.remove(id)
                }
                cgroups.removeTopLevelIfEmpty()
            }
            for id in left { try? LoopAttachment.waitDetached(image: "\(dataDirectory)/sandboxes/\(id)/disk.img") }
            try? FileManager.default.removeItem(atPath: dataDirectory)
        }
    }

    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return ((exe as NSString).deletingLastPathComponent as NSString).appendingPathComponent("atoll")
    }

    func start(_ arguments: [String], scratch: Scratch, stdin: String? = nil) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["run", "--data-dir", scratch.dataDirectory] + arguments
        process.environment = scratch.environment
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        return (process, out, err)
    }

    func run(_ arguments: [String], scratch: Scratch, stdin: String? = nil) throws -> Outcome {
        let (process, out, err) = try start(arguments, scratch: scratch, stdin: stdin)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test("runs Python by default and exits with the program's status; the sandbox is gone after")
    func python() throws {
        let scratch = Scratch()
        let ok = try run(["-c", "import os; print('hi', os.getuid())"], scratch: scratch)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout == "hi 1000\n")
        let failing = try run(["-c", "import sys; print('bye'); sys.exit(7)"], scratch: scratch)
        #expect(failing.status == 7)
        #expect(failing.stdout == "bye\n")
        #expect(scratch.sandboxes.isEmpty)
    }

    @Test("the language comes from the file extension; arguments and stdin reach the program")
    func filesAndArguments() throws {
        let scratch = Scratch()
        let file = "\(scratch.dataDirectory)-prog.ts"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "const args: string[] = process.argv.slice(2); console.log(args.join('+'))\n".write(toFile: file, atomically: true, encoding: .utf8)
        let ts = try run([file, "--", "a", "b"], scratch: scratch)
        #expect(ts.stdout == "a+b\n", "\(ts.stderr)")
        let piped = try run(
            ["--language", "javascript", "-c", "process.stdin.on('data', d => process.stdout.write(String(d).toUpperCase()))"], scratch: scratch,
            stdin: "quiet\n")
        #expect(piped.stdout == "QUIET\n")
        #expect(scratch.sandboxes.isEmpty)
    }

    @Test("bad input gets a clear error and a distinct status")
    func badInput() throws {
        let scratch = Scratch()
        let unknown = try run(["--language", "cobol", "-c", "x"], scratch: scratch)
        #expect(unknown.status == 125)
        #expect(unknown.stderr.contains("unknown language \"cobol\""))
        let tooBig = try run(["--cpu", "64", "-c", "print(1)"], scratch: scratch)
        #expect(tooBig.status == 125)
        #expect(tooBig.stderr.contains("cpu 64 exceeds the per-sandbox maximum of 4 vCPUs"))
        let both = try run(["-c", "print(1)", "file.py"], scratch: scratch)
        #expect(both.status != 0)
        #expect(scratch.sandboxes.isEmpty)
    }

    @Test("Ctrl-C removes the sandbox and exits with 130", arguments: [SIGINT, SIGTERM])
    func interrupt(signal: Int32) async throws {
        let scratch = Scratch()
        let (process, out, _) = try start(["-c", "import time; print('ready', flush=True); time.sleep(60)"], scratch: scratch)
        // Wait until the program runs inside its sandbox (the line may arrive in pieces).
        var ready = Data()
        while !ready.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            ready += chunk
        }
        #expect(String(decoding: ready, as: UTF8.self) == "ready\n")
        #expect(scratch.sandboxes.count == 1)
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        #expect(process.terminationStatus == 128 + signal)
        #expect(scratch.sandboxes.isEmpty, "left: \(scratch.sandboxes)")
    }

    @Test("after kill -9, the next run (or atoll gc) removes the abandoned sandbox")
    func killed() async throws {
        let scratch = Scratch()
        let (process, out, _) = try start(["-c", "import time; print('ready', flush=True); time.sleep(60)"], scratch: scratch)
        var ready = Data()
        while !ready.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            ready += chunk
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(scratch.sandboxes.count == 1)
        let next = try run(["-c", "print('next')"], scratch: scratch)
        #expect(next.stdout == "next\n")
        #expect(scratch.sandboxes.isEmpty, "the abandoned sandbox was reclaimed")
    }
}
