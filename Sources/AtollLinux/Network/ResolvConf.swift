import AtollCore

/// The `/etc/resolv.conf` a sandbox gets, derived from the host's resolver configuration (as
/// Docker does): the host's nameservers, except loopback ones (a stub resolver on the host's
/// 127.0.0.53 is unreachable from the sandbox's own loopback) and IPv6 ones (sandboxes have IPv4
/// only), plus the host's `search`, `domain` and `options` lines.
public enum ResolvConf {
    /// Where the host's configuration is read from, in order: the first one with a usable
    /// nameserver wins (systemd-resolved's upstream list when the main file holds only its stub).
    public static let hostFiles = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]

    /// The sandbox's file for the host's file contents (`nil` for files that could not be read).
    public static func forSandbox(hostContents: [String?]) -> String {
        var fallback: [String] = []
        for contents in hostContents {
            guard let contents else { continue }
            let (nameservers, other) = parse(contents)
            if fallback.isEmpty { fallback = other }
            if !nameservers.isEmpty { return render(nameservers: nameservers, other: other) }
        }
        return render(nameservers: [], other: fallback)
    }

    /// Reads the host's files and derives the sandbox's.
    public static func forSandbox() -> String {
        forSandbox(hostContents: hostFiles.map { try? KernelFile.read($0, limit: 64 << 10) })
    }

    static func parse(_ contents: String) -> (nameservers: [String], other: [String]) {
        var nameservers: [String] = []
        var other: [String] = []
        for line in contents.split(whereSeparator: \.isNewline) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let keyword = fields.first else { continue }
            switch keyword {
            case "nameserver":
                guard fields.count >= 2, let address = IPv4Address(fields[1]), address.value >> 24 != 127 else { continue }
                if !nameservers.contains(address.description) { nameservers.append(address.description) }
            case "search", "domain", "options":
                other.append(fields.joined(separator: " "))
            default:
                continue
            }
        }
        return (nameservers, other)
    }

    static func render(nameservers: [String], other: [String]) -> String {
        var text = "# Written by Atoll from the host's resolver configuration.\n"
        for server in nameservers.prefix(3) { text += "nameserver \(server)\n" }  // glibc reads at most 3
        for line in other { text += "\(line)\n" }
        return text
    }
}
