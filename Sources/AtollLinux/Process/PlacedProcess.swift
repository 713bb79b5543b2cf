import AtollCore
import CRuntime
import Glibc

/// A host program started directly inside a cgroup (`CLONE_INTO_CGROUP` on v2, `cgroup.procs`
/// on v1), so it never runs a single instruction outside it: cgroup conformance checks and
/// helpers. It runs with the caller's namespaces and credentials; the caller reaps it.
public struct PlacedProcess: Sendable {
    public let pid: Int32
    public let pidfd: OwnedFD

    /// Starts `path` with `arguments` (argv[0] included) in the group `placement` stands for.
    /// Standard input is /dev/null; output goes to `stdout`/`stderr` (-1: /dev/null).
    public static func spawn(
        _ path: String, arguments: [String], environment: [String] = [], placement: CgroupPlacement,
        stdout: Int32 = -1, stderr: Int32 = -1
    ) throws -> PlacedProcess {
        let arena = CArena()
        var config = atoll_placed_config()
        config.path = arena.string(path)
        config.argv = arena.stringArray(arguments)
        config.envp = arena.stringArray(environment)
        config.cgroup.dir_fd = placement.directory?.raw ?? -1
        config.cgroup.procs_fds = arena.array(placement.procsFiles.map(\.raw))
        config.cgroup.nprocs_fds = UInt32(placement.procsFiles.count)
        config.stdin_fd = -1
        config.stdout_fd = stdout
        config.stderr_fd = stderr
        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var failure = atoll_error()
        let rc = withExtendedLifetime((arena, placement)) { atoll_spawn_placed(&config, &pid, &pidfd, &failure) }
        guard rc == 0 else { throw SystemError.error(failure) }
        return PlacedProcess(pid: pid, pidfd: OwnedFD(pidfd))
    }

    /// Waits up to `timeout` seconds for it to end and reaps it; nil if it is still running.
    public func wait(timeout: Double) -> Termination? {
        guard Pidfd.waitForExit(pidfd, timeout: timeout) else { return nil }
        return Pidfd.reap(pidfd)
    }
}
