/// Atoll's version, reported by the CLI, atolld and the API.
public enum AtollVersion {
    public static let current = "0.1.0-dev"
}
