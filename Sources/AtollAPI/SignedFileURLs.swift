import AtollCore
import AtollStore
import Crypto
import Foundation
import Hummingbird

/// Daytona's signed file URLs (`download_url`, `upload_url`): the SDK signs
/// `v1:files:{METHOD}:{path}:{expires}` with the sandbox's signing key (HMAC-SHA256,
/// `v1_` + base64url) and the URL works without an API key — for `files/download` (GET) and
/// `files/upload-v2` (POST) of that sandbox only, until `expires` (0: never), and only while
/// the key is the sandbox's current one.
enum SignedFileURL {
    /// The organization a request acts for when it carries a file-URL signature instead of a
    /// key; nil when it carries none. A signature that does not hold is a 401 saying why.
    static func organization(_ request: Request, database: SandboxDatabase, now: Double) throws -> String? {
        let query = request.uri.queryParameters
        guard let signature = query.get("signature") else { return nil }
        let parts = request.uri.path.split(separator: "/", omittingEmptySubsequences: true)
        let method = request.method.rawValue
        guard parts.count == 4, parts[0] == "toolbox", parts[2] == "files",
            (parts[3] == "download" && method == "GET") || (parts[3] == "upload-v2" && method == "POST")
        else {
            throw AtollError(.unauthenticated, "a signed URL opens only files/download (GET) and files/upload-v2 (POST); send an API key")
        }
        guard let path = query.get("path"), let expiresText = query.get("expires"), let expires = Int64(expiresText), expires >= 0 else {
            throw AtollError(.unauthenticated, "a signed URL needs path, expires and signature")
        }
        guard expires == 0 || Double(expires) > now else {
            throw AtollError(.unauthenticated, "the signed URL expired at \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(expires))))")
        }
        guard let row = try database.sandbox(id: String(parts[1])), let key = row.signingKey,
            SecureBytes.equal(sign(key: key, method: method, path: path, expires: expires), signature)
        else {
            throw AtollError(.unauthenticated, "the URL's signature is not valid (wrong sandbox, another path, or a rotated signing key)")
        }
        return row.organizationId
    }

    static func sign(key: String, method: String, path: String, expires: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("v1:files:\(method):\(path):\(expires)".utf8), using: SymmetricKey(data: Array(key.utf8)))
        let base64 = Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        return "v1_" + base64.trimmingCharacters(in: CharacterSet(charactersIn: "="))
    }
}
