import Crypto

/// API keys are stored as their SHA-256 (swift-crypto), never in the clear.
public enum KeyHash {
    /// Lower-case hex SHA-256 of `bytes`.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        SHA256.hash(data: Array(bytes)).map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
    }
}
