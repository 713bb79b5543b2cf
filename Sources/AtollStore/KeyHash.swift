import AtollCore
import Crypto

/// API keys are stored as their SHA-256 (swift-crypto), never in the clear.
public enum KeyHash {
    /// Lower-case hex SHA-256 of `bytes`.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        Hex.string(SHA256.hash(data: Array(bytes)))
    }
}
