import AtollCore
import AtollLinux
import AtollStore
import Crypto
import Foundation
import Glibc

/// The tokens that open a sandbox's preview URLs, derived with HMAC-SHA256 from a key of the
/// daemon's own (`DATA_DIR/preview-key`, 0600, made on first use), so nothing per sandbox is
/// stored and a token stays the same across restarts:
///
/// - the sandbox's token (Daytona's `PortPreviewUrl.token`): opens every port of one sandbox;
/// - a signed token (`SignedPortPreviewUrl.token`): one port until an expiry time it carries,
///   `<expiry, hex seconds>-<HMAC of sandbox, port and expiry>`; one expired early is recorded in
///   the database until it would have expired anyway.
struct PreviewTokens: Sendable {
    let key: [UInt8]
    let database: SandboxDatabase

    /// Reads the key in `dataDirectory`, creating it if it is not there.
    init(dataDirectory: String, database: SandboxDatabase) throws {
        let path = "\(dataDirectory)/preview-key"
        var bytes = [UInt8](repeating: 0, count: 32)
        let created = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if created >= 0 {
            defer { close(created) }
            bytes = SecureBytes.random(32)
            guard write(created, bytes, bytes.count) == bytes.count, fsync(created) == 0 else { throw SystemError.last("write", path) }
        } else {
            guard errno == EEXIST else { throw SystemError.last("open", path) }
            let file = try OwnedFD(path: path, flags: O_RDONLY | O_NOFOLLOW)
            guard read(file.raw, &bytes, bytes.count) == bytes.count else {
                throw AtollError(.internal, "the preview key \(path) is damaged (not 32 bytes): remove it to make a new one, which ends every preview token")
            }
        }
        key = bytes
        self.database = database
    }

    func mac(_ text: String) -> String {
        Hex.string(Array(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: SymmetricKey(data: key))))
    }

    /// The token that opens every port of `sandbox`.
    func token(for sandbox: SandboxID) -> String { String(mac("preview:\(sandbox.rawValue)").prefix(40)) }

    /// A token for `port` of `sandbox` until `expires` (seconds since 1970).
    func signedToken(for sandbox: SandboxID, port: Int, expires: Int) -> String {
        let stamp = String(expires, radix: 16)
        return stamp + "-" + mac("signed:\(sandbox.rawValue):\(port):\(stamp)").prefix(40)
    }

    /// When a signed token of `sandbox`'s `port` expires, if it is one (whatever the expiry).
    func signedExpiry(_ token: String, sandbox: SandboxID, port: Int) -> Int? {
        let parts = token.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let expires = Int(parts[0], radix: 16), expires > 0,
            SecureBytes.equal(signedToken(for: sandbox, port: port, expires: expires), token)
        else { return nil }
        return expires
    }

    /// Whether `token` opens `port` of `sandbox` at `now`.
    func opens(_ token: String, sandbox: SandboxID, port: Int, now: Double) -> Bool {
        if SecureBytes.equal(self.token(for: sandbox), token) { return true }
        guard let expires = signedExpiry(token, sandbox: sandbox, port: port), Double(expires) > now else { return false }
        return (try? database.isPreviewTokenRevoked(token)) == false
    }

}
