import AtollCore
import AtollLinux
import AtollSandbox
import Foundation
import Glibc

/// The settings every process sharing a data directory must agree on (`Setting.mustAgree`):
/// the cgroup name, the host id region and the sandbox network. The first runner to open a data
/// directory writes them to `<data>/settings.json`; a later one whose settings differ refuses to
/// start, naming the setting — an embedded CLI with another cgroup name or subnet would
/// otherwise act on cgroups and addresses that are not its sandboxes'.
public struct SettingsRecord: Codable, Sendable, Hashable {
    public var cgroupName: String
    public var idRangeStart: UInt32
    /// `bridge` or `none`.
    public var networkMode: String
    public var networkBridge: String?
    public var networkSubnet: String?
    public var networkNamespace: String?

    public init(_ configuration: RuntimeConfiguration) {
        cgroupName = configuration.driver.cgroupName
        idRangeStart = configuration.idRangeStart
        let network = configuration.driver.network
        networkMode = network == nil ? "none" : "bridge"
        networkBridge = network?.bridge
        networkSubnet = network.map { "\($0.subnet.cidr)" }
        networkNamespace = network?.namespacePath
    }

    public static func path(dataDirectory: String) -> String { "\(dataDirectory)/settings.json" }

    /// The differences from `recorded`, each as "setting: recorded X, now Y" (setting keys of
    /// the configuration file, with their environment variables).
    public func differences(from recorded: SettingsRecord) -> [String] {
        var lines: [String] = []
        func compare(_ name: String, _ old: String?, _ new: String?) {
            if old != new { lines.append("\(name): \(old ?? "(none)") in the data directory, \(new ?? "(none)") now") }
        }
        compare("cgroup.name (ATOLL_CGROUP_NAME)", recorded.cgroupName, cgroupName)
        compare("ids.rangeStart (ATOLL_ID_RANGE_START)", "\(recorded.idRangeStart)", "\(idRangeStart)")
        compare("network.mode (ATOLL_NETWORK)", recorded.networkMode, networkMode)
        compare("network.bridge (ATOLL_BRIDGE)", recorded.networkBridge, networkBridge)
        compare("network.subnet (ATOLL_SUBNET)", recorded.networkSubnet, networkSubnet)
        compare("network.namespace (ATOLL_NETNS)", recorded.networkNamespace, networkNamespace)
        return lines
    }

    /// Records the settings on first use; afterwards checks them against the record.
    public static func check(_ configuration: RuntimeConfiguration) throws {
        let current = SettingsRecord(configuration)
        let path = path(dataDirectory: configuration.dataDirectory)
        if let data = FileManager.default.contents(atPath: path) {
            let recorded: SettingsRecord
            do {
                recorded = try JSONDecoder().decode(SettingsRecord.self, from: data)
            } catch {
                throw AtollError(.internal, "\(path) is not a settings record Atoll wrote; move it away to record the current settings", cause: error)
            }
            let differences = current.differences(from: recorded)
            guard differences.isEmpty else {
                throw AtollError(
                    .invalidArgument,
                    "the settings differ from those the data directory \(configuration.dataDirectory) was set up with: "
                        + differences.joined(separator: "; ") + " (every process using one data directory must agree; see docs/configuration.md)")
            }
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(current) + Data("\n".utf8)
        // Written to a temporary file and renamed: a reader never sees half a record.
        let temporary = "\(path).tmp.\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o644]) else {
            throw SystemError.last("create", temporary)
        }
        guard rename(temporary, path) == 0 else {
            let error = SystemError.last("rename", path)
            unlink(temporary)
            throw error
        }
    }
}
