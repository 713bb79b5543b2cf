import AtollCore
import AtollLinux
import Foundation
import Glibc
import Testing

@Suite("host programs")
struct HostProcessTests {
    @Test("output, status and signal come back; stderr is quoted in the error")
    func results() throws {
        let sh = try HostCommand.locate("sh", package: "dash")
        let ok = try HostProcess.run(sh, ["-c", "echo out; echo err >&2"], environment: ["PATH=/usr/bin:/bin"])
        #expect(ok.succeeded && ok.stdout == Array("out\n".utf8) && ok.stderr == Array("err\n".utf8))
        let failed = try HostProcess.run(sh, ["-c", "exit 7"], environment: [])
        #expect(failed.exitStatus == 7 && failed.signal == nil)
        let killed = try HostProcess.run(sh, ["-c", "kill -9 $$"], environment: [])
        #expect(killed.exitStatus == nil && killed.signal == SIGKILL)
        #expect(throws: AtollError.self) { try HostCommand.run(sh, ["-c", "echo broken >&2; exit 3"]) }
        do {
            try HostCommand.run(sh, ["-c", "echo broken >&2; exit 3"])
        } catch {
            #expect("\(error)".contains("exited with status 3: broken"))
        }
        // Nothing but what was given reaches the program's environment; stdin is /dev/null.
        let env = try HostProcess.run(sh, ["-c", "env; cat"], environment: ["ONLY=this"])
        #expect(String(decoding: env.stdout, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("PWD=") } == ["ONLY=this"])
    }

    @Test("a process holding descriptors past 1024 still runs host programs (no select/fd_set)")
    func manyDescriptors() throws {
        try withDescriptorLimit(above: 2100) {
            // Occupy descriptors up to past 2000, as a daemon with ~300 sandboxes does.
            let base = open("/dev/null", O_RDONLY | O_CLOEXEC)
            var held: [Int32] = []
            defer {
                held.forEach { close($0) }
                close(base)
            }
            while (held.last ?? 0) < 2048 {
                let fd = fcntl(base, F_DUPFD_CLOEXEC, 0)
                try #require(fd >= 0, "dup failed: errno \(errno)")
                held.append(fd)
            }
            let out = try HostCommand.run(try HostCommand.locate("sh", package: "dash"), ["-c", "echo fine"])
            #expect(out == "fine\n")
        }
    }
}

/// Runs `body` with RLIMIT_NOFILE's soft limit raised (to 4096 when the hard limit allows),
/// restored after; requires the limit to end up above `minimum`.
func withDescriptorLimit(above minimum: rlim_t, _ body: () throws -> Void) throws {
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    var limit = rlimit()
    getrlimit(resource, &limit)
    let saved = limit
    if limit.rlim_cur < 4096 && limit.rlim_max >= 4096 {
        limit.rlim_cur = 4096
        setrlimit(resource, &limit)
    }
    defer {
        var restore = saved
        setrlimit(resource, &restore)
    }
    var current = rlimit()
    getrlimit(resource, &current)
    try #require(current.rlim_cur > minimum, "needs RLIMIT_NOFILE above \(minimum), have \(current.rlim_cur)")
    try body()
}
