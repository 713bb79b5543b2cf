import AtollCore
import CRuntime
import Foundation

/// The sandbox's PID 1 (`CRuntime/init/atoll-init.c`, embedded at build time by the EmbedInit
/// plugin) in a sealed memfd. Sandboxes execute it from there, so no file on the host or inside
/// the sandbox can be swapped for it, and it needs nothing from the sandbox's root filesystem.
public enum InitBinary {
    /// The static init binary.
    public static var bytes: [UInt8] {
        guard let data = Data(base64Encoded: embeddedInitBase64) else { fatalError("the embedded atoll-init is corrupt") }
        return [UInt8](data)
    }

    /// A new sealed, executable, close-on-exec memfd holding the init.
    public static func memfd() throws -> OwnedFD { try SealedBinary.memfd("atoll-init", bytes) }
}

/// The sandbox's agent (`CRuntime/agent/atoll-agent.c`, embedded at build time by the EmbedInit
/// plugin) in a sealed memfd that every sandbox's PID 1 receives as its fd 4 and executes for each
/// request (see `AgentConnection`). A static executable: it needs nothing from the sandbox.
public enum AgentBinary {
    public static var bytes: [UInt8] {
        guard let data = Data(base64Encoded: embeddedAgentBase64) else { fatalError("the embedded atoll-agent is corrupt") }
        return [UInt8](data)
    }

    /// A new sealed, executable, close-on-exec memfd holding the agent.
    public static func memfd() throws -> OwnedFD { try SealedBinary.memfd("atoll-agent", bytes) }
}

enum SealedBinary {
    /// A sealed, executable, close-on-exec memfd holding `bytes`: nothing can change it.
    static func memfd(_ name: String, _ bytes: [UInt8]) throws -> OwnedFD {
        var fd: Int32 = -1
        var failure = atoll_error()
        let rc = bytes.withUnsafeBytes { atoll_sealed_memfd(name, $0.baseAddress, $0.count, &fd, &failure) }
        guard rc == 0 else { throw SystemError.error(failure) }
        return OwnedFD(fd)
    }
}
