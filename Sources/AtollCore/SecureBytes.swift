/// Secret material: random bytes from the system's generator (getrandom(2)) and comparisons of
/// secrets in time that does not depend on where they differ. One place for API keys, sandbox
/// ids, the daemon's preview key, signing keys and every token check.
public enum SecureBytes {
    /// `count` random bytes.
    public static func random(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Whether two secrets are equal, compared in constant time for equal lengths.
    public static func equal(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
