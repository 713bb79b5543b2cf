import AtollCore
import CRuntime
import Glibc

/// Process handles that cannot be confused by pid reuse.
public enum Pidfd {
    /// A pidfd for `pid`.
    public static func open(_ pid: Int32) throws -> OwnedFD {
        var failure = atoll_error()
        let fd = atoll_pidfd_open(pid, &failure)
        guard fd >= 0 else { throw SystemError.error(failure) }
        return OwnedFD(fd)
    }

    /// Waits up to `timeout` seconds for the process to exit; true once it has.
    public static func waitForExit(_ pidfd: OwnedFD, timeout: Double) -> Bool {
        var pfd = pollfd(fd: pidfd.raw, events: Int16(POLLIN), revents: 0)
        let deadline = Monotonic.now() + timeout
        while true {
            let left = max(0, deadline - Monotonic.now())
            let r = poll(&pfd, 1, Int32((left * 1000).rounded(.up)))
            if r > 0 { return true }
            if r == 0 || errno != EINTR { return false }
        }
    }

    /// Reaps the process if it is a child of ours and has exited; nil otherwise.
    @discardableResult
    public static func reap(_ pidfd: OwnedFD) -> Termination? {
        var exit = atoll_exit()
        var failure = atoll_error()
        guard atoll_pidfd_wait(pidfd.raw, 0, &exit, &failure) == 1 else { return nil }
        return exit.exited == 1 ? .exited(exit.status) : .signaled(exit.status)
    }

    /// Sends `signal` through the pidfd.
    public static func signal(_ pidfd: OwnedFD, _ signal: Int32) throws {
        var failure = atoll_error()
        guard atoll_pidfd_signal(pidfd.raw, signal, &failure) == 0 else { throw SystemError.error(failure) }
    }
}
