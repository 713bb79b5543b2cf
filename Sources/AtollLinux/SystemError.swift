public import AtollCore
public import CRuntime
import Glibc

/// Conversions from errno values and shim failures to `AtollError`, so that every failed system
/// call reads like `mount(/var/lib/atoll/...): Operation not permitted (EPERM)`.
public enum SystemError {
    /// The symbolic name of an errno value, e.g. `EPERM`.
    public static func name(_ err: Int32) -> String {
        switch err {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case ESRCH: return "ESRCH"
        case EINTR: return "EINTR"
        case EIO: return "EIO"
        case E2BIG: return "E2BIG"
        case ENOEXEC: return "ENOEXEC"
        case EBADF: return "EBADF"
        case ECHILD: return "ECHILD"
        case EAGAIN: return "EAGAIN"
        case ENOMEM: return "ENOMEM"
        case EACCES: return "EACCES"
        case EBUSY: return "EBUSY"
        case EEXIST: return "EEXIST"
        case EXDEV: return "EXDEV"
        case ENODEV: return "ENODEV"
        case ENOTDIR: return "ENOTDIR"
        case EISDIR: return "EISDIR"
        case EINVAL: return "EINVAL"
        case EMFILE: return "EMFILE"
        case ENOSPC: return "ENOSPC"
        case EROFS: return "EROFS"
        case ENAMETOOLONG: return "ENAMETOOLONG"
        case ENOSYS: return "ENOSYS"
        case ENOTEMPTY: return "ENOTEMPTY"
        case ELOOP: return "ELOOP"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        case ETIMEDOUT: return "ETIMEDOUT"
        default: return "errno \(err)"
        }
    }

    /// `strerror(err)` plus the symbolic name.
    public static func describe(_ err: Int32) -> String {
        "\(String(cString: strerror(err))) (\(name(err)))"
    }

    /// An error for a failed call on a path: `call(path): description`.
    public static func error(_ call: String, _ path: String = "", errno err: Int32) -> AtollError {
        let target = path.isEmpty ? "" : "(\(path))"
        return AtollError(code(for: err), "\(call)\(target): \(describe(err))", cause: SystemCallError(call: call, path: path, errno: err))
    }

    /// Converts a failure reported by the C shim.
    public static func error(_ failure: atoll_error) -> AtollError {
        var copy = failure
        let call = withUnsafeBytes(of: &copy.call) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let path = withUnsafeBytes(of: &copy.path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return error(call.isEmpty ? "system call" : call, path, errno: failure.err)
    }

    /// The current `errno` as an error for `call` on `path`.
    public static func last(_ call: String, _ path: String = "") -> AtollError {
        error(call, path, errno: errno)
    }

    /// Most failures are system errors; a few say something more specific about the cause. A
    /// missing file on the host (`ENOENT`) is a system error like any other: only domain code
    /// (a sandbox, a snapshot, a file inside a sandbox) says "not found".
    static func code(for err: Int32) -> AtollError.Code {
        switch err {
        case ENOSPC, EMFILE, ENFILE, ENOMEM: return .resourceExhausted
        case ETIMEDOUT: return .timeout
        default: return .system
        }
    }
}
