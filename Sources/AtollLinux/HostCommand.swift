import AtollCore
import Foundation

/// Runs a host tool (mkfs.ext4, resize2fs, ...) off the hot path and turns a failure into an
/// error that names the command and quotes what it printed.
public enum HostCommand {
    /// Standard locations, so a minimal PATH in a service still finds e2fsprogs.
    static let searchPath = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// The absolute path of `tool`, or an `unavailable` error naming the Debian package to install.
    public static func locate(_ tool: String, package: String) throws -> String {
        for dir in searchPath where FileManager.default.isExecutableFile(atPath: "\(dir)/\(tool)") {
            return "\(dir)/\(tool)"
        }
        throw AtollError(.unavailable, "\(tool) not found (install the Debian package \(package))")
    }

    /// Runs `executable` with `arguments`; returns standard output. Non-zero exit throws.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let result = try HostProcess.run(executable, arguments, environment: ["PATH=\(searchPath.joined(separator: ":"))", "LC_ALL=C"])
        let stdout = String(decoding: result.stdout, as: UTF8.self)
        guard result.succeeded else {
            let stderr = String(decoding: result.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let command = ([executable] + arguments).joined(separator: " ")
            let how = result.exitStatus.map { "exited with status \($0)" } ?? "was killed by signal \(result.signal ?? 0)"
            throw AtollError(.system, "\(command) \(how): \(stderr.isEmpty ? stdout : stderr)")
        }
        return stdout
    }
}
