import AtollCore

/// An account inside a sandbox, resolved from its own `/etc/passwd` and `/etc/group`.
public struct SandboxAccount: Sendable, Hashable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String
    public var shell: String
    /// Supplementary groups (primary group included).
    public var groups: [UInt32]
}

/// A parsed passwd/group pair.
public struct PasswdDatabase: Sendable {
    public var accounts: [SandboxAccount]
    /// Groups of /etc/group: name and gid.
    public var groups: [(name: String, gid: UInt32)]
    var groupMembers: [String: [UInt32]]

    /// Parses the contents of `/etc/passwd` and `/etc/group`; malformed lines are skipped.
    public init(passwd: String, group: String) {
        var members: [String: [UInt32]] = [:]
        var groups: [(name: String, gid: UInt32)] = []
        for line in group.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 4, let gid = UInt32(f[2]) else { continue }
            groups.append((String(f[0]), gid))
            for user in f[3].split(separator: ",") { members[String(user), default: []].append(gid) }
        }
        groupMembers = members
        self.groups = groups
        accounts = passwd.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 7, !line.hasPrefix("#"), let uid = UInt32(f[2]), let gid = UInt32(f[3]) else { return nil }
            let name = String(f[0])
            var groups = [gid]
            for g in members[name] ?? [] where !groups.contains(g) { groups.append(g) }
            return SandboxAccount(name: name, uid: uid, gid: gid, home: String(f[5]), shell: String(f[6]), groups: groups)
        }
    }

    /// Resolves a user by name, by numeric uid, or as `uid:gid`. A numeric id without an entry is
    /// accepted (home `/`), as container runtimes do.
    public func resolve(_ user: String) throws -> SandboxAccount {
        if let account = accounts.first(where: { $0.name == user }) { return account }
        let parts = user.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count <= 2, let uid = UInt32(parts[0]), uid < 65536 {
            let known = accounts.first { $0.uid == uid }
            let gid = parts.count == 2 ? UInt32(parts[1]) : (known?.gid ?? uid)
            guard let gid, gid < 65536 else { throw AtollError(.invalidArgument, "invalid group in user \"\(user)\"") }
            return SandboxAccount(name: known?.name ?? String(uid), uid: uid, gid: gid, home: known?.home ?? "/",
                                  shell: known?.shell ?? "/bin/sh", groups: known.map { $0.groups } ?? [gid])
        }
        throw AtollError(.notFound, "user \"\(user.prefix(64))\" does not exist in the sandbox's /etc/passwd")
    }
}
