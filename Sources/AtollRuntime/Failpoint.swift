import Foundation
import Glibc

/// Named points where a test can make this process die at once with SIGKILL, to prove that a
/// restart reconciles whatever was half-done. Set `ATOLL_FAILPOINT=<name>` in the environment of
/// the process under test; without it every point is a no-op. Compiled in only for debug builds
/// (`ATOLL_FAILPOINTS`, which `swift test` uses); a release build has no way to arm them.
///
/// Points: create.after-insert, create.after-provision, create.after-start, start.after-start,
/// stop.after-kill, archive.after-write, archive.after-state, restore.after-restore,
/// resize.after-apply, delete.after-destroy.
public enum Failpoint {
    #if ATOLL_FAILPOINTS
    static let armed = ProcessInfo.processInfo.environment["ATOLL_FAILPOINT"]
    #else
    static let armed: String? = nil
    #endif

    @inline(__always)
    public static func hit(_ name: String) {
        guard let armed, armed == name else { return }
        FileHandle.standardError.write(Data("atoll: failpoint \(name): killing this process\n".utf8))
        kill(getpid(), SIGKILL)
        // SIGKILL is delivered before kill() returns to a single-threaded caller; a
        // multithreaded one may run a few more instructions, so wait for it.
        while true { pause() }
    }
}
