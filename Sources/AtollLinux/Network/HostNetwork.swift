public import AtollCore
import CRuntime
import Foundation
import Glibc

/// The network namespace that plays the host for sandbox networking: the bridge, the sandboxes'
/// host-side links and the firewall live in it. Normally the caller's own; a test harness (or an
/// operator running Atoll in a dedicated namespace) names another one by path.
///
/// Every call goes over rtnetlink or libnftables from this process: no `ip` or `nft` processes.
public final class HostNetwork: Sendable {
    /// The namespace, or nil for the caller's own.
    let namespace: OwnedFD?
    /// Path the namespace was opened from (for messages).
    public let namespacePath: String?

    public init(namespacePath: String? = nil) throws(AtollError) {
        self.namespacePath = namespacePath
        if let namespacePath {
            namespace = try OwnedFD(path: namespacePath, flags: O_RDONLY | O_CLOEXEC)
        } else {
            namespace = nil
        }
    }

    var fd: Int32 { namespace?.raw ?? -1 }

    /// Creates the bridge if needed and gives it `gateway`/`prefix`, up.
    public func ensureBridge(_ name: String, gateway: IPv4Address, prefix: Int) throws(AtollError) {
        var failure = atoll_error()
        guard atoll_net_bridge_ensure(fd, name, gateway.value, UInt8(prefix), &failure) == 0 else { throw SystemError.error(failure) }
    }

    /// Makes a sandbox's network namespace linked to `bridge` through the veth `hostName`
    /// (`peerName` inside), with `address`/32 and routes through `gateway`.
    public func createSandboxNamespace(
        bridge: String, hostName: String, peerName: String = "eth0",
        address: IPv4Address, gateway: IPv4Address
    ) throws(AtollError) -> OwnedFD {
        var failure = atoll_error()
        var netns: Int32 = -1
        let rc = bridge.withCString { bridge in
            hostName.withCString { host in
                peerName.withCString { peer in
                    var link = atoll_sandbox_link(bridge: bridge, host_name: host, peer_name: peer, address: address.value, gateway: gateway.value)
                    return atoll_net_sandbox_create(fd, &link, &netns, &failure)
                }
            }
        }
        guard rc == 0 else { throw SystemError.error(failure) }
        return OwnedFD(netns)
    }

    /// Deletes a link; returns false when there was none.
    @discardableResult
    public func deleteLink(_ name: String) throws(AtollError) -> Bool {
        var failure = atoll_error()
        let rc = atoll_net_link_delete(fd, name, &failure)
        guard rc >= 0 else { throw SystemError.error(failure) }
        return rc == 0
    }

    /// Names of the bridge's ports (empty when there is no bridge).
    public func bridgePorts(_ bridge: String) throws(AtollError) -> [String] {
        var failure = atoll_error()
        var buffer = [CChar](repeating: 0, count: 1 << 20)
        let rc = atoll_net_bridge_ports(fd, bridge, &buffer, buffer.count, &failure)
        guard rc >= 0 else { throw SystemError.error(failure) }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// Reads a sysctl of the namespace (`net/ipv4/ip_forward`) and sets it to `value` if given
    /// and different. Returns the value before.
    @discardableResult
    public func sysctl(_ name: String, set value: String? = nil) throws(AtollError) -> String {
        var failure = atoll_error()
        var old = [CChar](repeating: 0, count: 256)
        let path = "/proc/sys/\(name)"
        let rc: Int32
        if let value {
            rc = atoll_net_sysctl(fd, path, value, &old, old.count, &failure)
        } else {
            rc = atoll_net_sysctl(fd, path, nil, &old, old.count, &failure)
        }
        guard rc == 0 else { throw SystemError.error(failure) }
        return String(decoding: old.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs nftables commands as one atomic transaction; returns what nft printed (listings).
    @discardableResult
    public func nft(_ commands: String) throws(AtollError) -> String {
        var failure = atoll_error()
        var output: UnsafeMutablePointer<CChar>?
        var errors: UnsafeMutablePointer<CChar>?
        let rc = atoll_nft_run(fd, commands, &output, &errors, &failure)
        defer {
            free(output)
            free(errors)
        }
        let printed = output.map { String(cString: $0) } ?? ""
        guard rc == 0 else {
            let message = errors.map { String(cString: $0) } ?? SystemError.error(failure).message
            throw AtollError(.system, "nftables rejected the change: \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return printed
    }
}

extension HostNetwork {
    /// A new, empty network namespace (loopback up), alive as long as the returned fd.
    public static func makeNamespace() throws(AtollError) -> OwnedFD {
        var failure = atoll_error()
        var fd: Int32 = -1
        guard atoll_net_namespace_create(&fd, &failure) == 0 else { throw SystemError.error(failure) }
        return OwnedFD(fd)
    }

    /// A TCP/UDP/... socket that lives in the namespace `namespace` (close-on-exec).
    public static func socket(in namespace: OwnedFD, domain: Int32, type: Int32, protocol: Int32 = 0) throws(AtollError) -> OwnedFD {
        var failure = atoll_error()
        let fd = atoll_net_socket(namespace.raw, domain, type, `protocol`, &failure)
        guard fd >= 0 else { throw SystemError.error(failure) }
        return OwnedFD(fd)
    }
}
