import AtollRuntime
import AtollSandbox
import Foundation

/// Host paths never reach a client: a message that names a file of Atoll's data directory (a
/// failed mount of a sandbox's disk, say) names it relative to `$ATOLL_DATA` instead, so the
/// caller still learns what went wrong but nothing of the host's layout. Applied to every error
/// body and error reason the API returns.
struct HostPathRedaction: Sendable {
    let replacements: [(String, String)]

    init(replacements: [(String, String)]) {
        self.replacements = replacements
    }

    init(configuration: RuntimeConfiguration) {
        var pairs = [(configuration.driver.snapshotsDirectory, "$ATOLL_SNAPSHOTS"), (configuration.dataDirectory, "$ATOLL_DATA")]
        // Longest first, so a snapshots directory inside the data directory keeps its own name.
        pairs = pairs.filter { $0.0.count > 1 }.sorted { $0.0.count > $1.0.count }
        replacements = pairs.map { (path, name) in (path.hasSuffix("/") ? String(path.dropLast()) : path, name) }
    }

    func callAsFunction(_ text: String) -> String {
        var result = text
        for (path, name) in replacements where result.contains(path) {
            result = result.replacingOccurrences(of: path, with: name)
        }
        return result
    }
}
