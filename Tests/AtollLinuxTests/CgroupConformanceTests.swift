import AtollTestSupport
import Foundation
import Glibc
import Testing

/// The cgroup conformance checks (atoll-cgroup-conformance) against this host's backend — v1 on
/// the hybrid build machines. scripts/cgroup-v2-vm runs the very same checks as PID 1 of a cgroup
/// v2 guest, so both backends are proven against one protocol.
@Suite("cgroup conformance on this host", .privileged, .serialized)
struct CgroupConformanceTests {
    static let checks = ["groups", "placement", "cpu", "memory", "pids", "freeze", "kill", "usage"]

    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return ((exe as NSString).deletingLastPathComponent as NSString).appendingPathComponent("atoll-cgroup-conformance")
    }

    func conformance(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("the binary lists exactly the checks this suite runs")
    func list() throws {
        let (status, output) = try conformance(["list"])
        #expect(status == 0)
        #expect(output.split(separator: "\n").map { String($0.split(separator: "\t")[0]) } == Self.checks)
    }

    @Test("each check passes against the host's backend", arguments: checks)
    func check(_ name: String) throws {
        let group = "atoll-test-conformance-\(getpid())"
        let (status, output) = try conformance(["run", "--group-name", group, name])
        #expect(status == 0, "\(output)")
        #expect(output.contains("PASS \(name) "), "\(output)")
        let left = try FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup").filter { hierarchy in
            FileManager.default.fileExists(atPath: "/sys/fs/cgroup/\(hierarchy)/\(group)")
        }
        #expect(left.isEmpty, "the check left its groups in \(left)")
    }

    @Test("an unknown check is refused by name")
    func unknown() throws {
        let (status, output) = try conformance(["run", "no-such-check"])
        #expect(status == 2)
        #expect(output.contains("unknown check(s): no-such-check"))
    }
}
