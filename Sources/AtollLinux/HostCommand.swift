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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ["PATH": searchPath.joined(separator: ":"), "LC_ALL": "C"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw AtollError(.system, "could not start \(executable)", cause: "\(error)")
        }
        // Drain both pipes before waiting, so a chatty tool cannot block on a full pipe.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stdout = String(decoding: outData, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            let stderr = String(decoding: errData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let command = ([executable] + arguments).joined(separator: " ")
            throw AtollError(.system, "\(command) exited with status \(process.terminationStatus): \(stderr.isEmpty ? stdout : stderr)")
        }
        return stdout
    }
}
