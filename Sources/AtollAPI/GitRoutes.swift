import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import Foundation
import Hummingbird

/// Daytona's `sandbox.git` under `/toolbox/{id}/git/…`: each call runs `git` inside the sandbox
/// as its user (the default snapshot has git), with the repository path relative to the user's
/// home. Credentials for clone, push and pull reach git through its environment for that one
/// process (`GIT_CONFIG_*` with an HTTP Authorization header): never on a command line, never in
/// the sandbox's git configuration, never logged. git never prompts (a missing credential fails at
/// once), and its message is the error's, with the daemon code the SDK maps to its `DaytonaGit…`
/// exceptions.
struct GitRoutes {
    let manager: SandboxManager
    let redact: HostPathRedaction

    /// Network operations may take long; local ones should not.
    static let networkTimeout = 600.0
    static let localTimeout = 120.0

    func register(_ toolbox: RouterGroup<AtollContext>) {
        toolbox.post(":id/git/clone", use: clone)
        toolbox.get(":id/git/status", use: status)
        toolbox.post(":id/git/add") { request, context in
            let body = try await JSON.decode(AddBody.self, from: request, context: context)
            guard !body.files.isEmpty else { throw AtollError(.invalidArgument, "files is empty (use [\".\"] for all)") }
            try await git(context, ["-C", body.path, "add", "--"] + body.files)
            return JSON.empty(.ok)
        }
        toolbox.post(":id/git/commit", use: commit)
        toolbox.post(":id/git/push") { request, context in
            let body = try await JSON.decode(RemoteBody.self, from: request, context: context)
            var args = ["-C", body.path, "push"]
            if body.set_upstream == true { args.append("--set-upstream") }
            if let remote = body.remote { args.append(remote) } else if body.branch != nil { args.append("origin") }
            if let branch = body.branch { args.append(branch) }
            try await git(context, args, credentials: Credentials(body.username, body.password), timeout: Self.networkTimeout)
            return JSON.empty(.ok)
        }
        toolbox.post(":id/git/pull") { request, context in
            let body = try await JSON.decode(RemoteBody.self, from: request, context: context)
            var args = ["-C", body.path, "pull", "--no-edit"]
            if let remote = body.remote { args.append(remote) } else if body.branch != nil { args.append("origin") }
            if let branch = body.branch { args.append(branch) }
            try await git(context, args, credentials: Credentials(body.username, body.password), timeout: Self.networkTimeout)
            return JSON.empty(.ok)
        }
        toolbox.get(":id/git/branches", use: branches)
        toolbox.post(":id/git/branches") { request, context in
            let body = try await JSON.decode(BranchBody.self, from: request, context: context)
            try await git(context, ["-C", body.path, "branch", "--", body.name])
            return JSON.empty(.created)
        }
        toolbox.delete(":id/git/branches") { request, context in
            let body = try await JSON.decode(BranchBody.self, from: request, context: context)
            try await git(context, ["-C", body.path, "branch", "-D", "--", body.name])
            return Response(status: .noContent)
        }
        toolbox.post(":id/git/checkout") { request, context in
            let body = try await JSON.decode(CheckoutBody.self, from: request, context: context)
            try await git(context, ["-C", body.path, "checkout", body.branch, "--"])
            return JSON.empty(.ok)
        }
        toolbox.post(":id/git/init") { request, context in
            let body = try await JSON.decode(InitBody.self, from: request, context: context)
            var args = ["init"]
            if body.bare == true { args.append("--bare") }
            if let branch = body.initial_branch { args += ["--initial-branch", branch] }
            try await git(context, args + ["--", body.path])
            return JSON.empty(.created)
        }
        toolbox.post(":id/git/reset") { request, context in
            let body = try await JSON.decode(ResetBody.self, from: request, context: context)
            var args = ["-C", body.path, "reset"]
            if let mode = body.mode {
                guard ["soft", "mixed", "hard", "merge", "keep"].contains(mode) else {
                    throw AtollError(.invalidArgument, "mode must be soft, mixed, hard, merge or keep, got \"\(mode.prefix(16))\"")
                }
                if body.files?.isEmpty ?? true { args.append("--\(mode)") }
            }
            args.append(body.target ?? "HEAD")
            if let files = body.files, !files.isEmpty { args += ["--"] + files }
            try await git(context, args)
            return JSON.empty(.ok)
        }
        toolbox.post(":id/git/restore") { request, context in
            let body = try await JSON.decode(RestoreBody.self, from: request, context: context)
            guard !body.files.isEmpty else { throw AtollError(.invalidArgument, "files is empty") }
            var args = ["-C", body.path, "restore"]
            if body.staged == true { args.append("--staged") }
            if body.worktree == true || (body.staged != true && body.worktree == nil) { args.append("--worktree") }
            if let source = body.source { args.append("--source=\(source)") }
            try await git(context, args + ["--"] + body.files)
            return JSON.empty(.ok)
        }
        toolbox.post(":id/git/remotes") { request, context in
            let body = try await JSON.decode(AddRemoteBody.self, from: request, context: context)
            if body.overwrite == true {
                _ = try? await git(context, ["-C", body.path, "remote", "remove", body.name])
            }
            try await git(context, ["-C", body.path, "remote", "add"] + (body.fetch == true ? ["-f"] : []) + ["--", body.name, body.url])
            return JSON.empty(.created)
        }
        toolbox.get(":id/git/remotes", use: remotes)
        toolbox.post(":id/git/config") { request, context in
            let body = try await JSON.decode(SetConfigBody.self, from: request, context: context)
            try await git(context, try Self.config(body.scope, path: body.path, ["--", body.key, body.value]))
            return JSON.empty(.ok)
        }
        toolbox.get(":id/git/config") { request, context in
            let key = try request.requireQuery("key")
            let result = try await git(
                context, try Self.config(request.query("scope"), path: request.query("path"), ["--get", "--", key]), allowedExits: [1])
            return try JSON.response(ConfigValue(value: result.exitCode == 0 ? result.stdoutText.trimmingCharacters(in: .newlines) : nil))
        }
        toolbox.post(":id/git/config/user") { request, context in
            let body = try await JSON.decode(ConfigureUserBody.self, from: request, context: context)
            try await git(context, try Self.config(body.scope, path: body.path, ["--", "user.name", body.name]))
            try await git(context, try Self.config(body.scope, path: body.path, ["--", "user.email", body.email]))
            return JSON.empty(.ok)
        }
        toolbox.post(":id/git/credentials") { request, context in
            // Daytona's `dangerously_authenticate`: the caller asks for the credential to be kept
            // in the sandbox (git's store helper, ~/.git-credentials, mode 0600).
            let body = try await JSON.decode(AuthenticateBody.self, from: request, context: context)
            for field in [body.username, body.password, body.host ?? "", body.protocol ?? ""] where field.contains("\n") || field.utf8.contains(0) {
                throw AtollError(.invalidArgument, "credentials must not contain newlines")
            }
            try await git(context, ["config", "--global", "credential.helper", "store"])
            let credential = "protocol=\(body.protocol ?? "https")\nhost=\(body.host ?? "github.com")\nusername=\(body.username)\npassword=\(body.password)\n\n"
            try await git(context, ["credential", "approve"], stdin: Array(credential.utf8))
            return JSON.empty(.ok)
        }
        toolbox.get(":id/git/history", use: history)
    }

    // MARK: - Bodies (snake_case keys, as the SDK sends them)

    struct AddBody: Decodable {
        var path: String
        var files: [String]
    }
    struct CloneBody: Decodable {
        var url: String
        var path: String
        var branch: String?
        var commit_id: String?
        var username: String?
        var password: String?
        var depth: Int?
        var insecure_skip_tls: Bool?
    }
    struct CommitBody: Decodable {
        var path: String
        var message: String
        var author: String
        var email: String
        var allow_empty: Bool?
    }
    struct RemoteBody: Decodable {
        var path: String
        var username: String?
        var password: String?
        var remote: String?
        var branch: String?
        var set_upstream: Bool?
    }
    struct BranchBody: Decodable {
        var path: String
        var name: String
    }
    struct CheckoutBody: Decodable {
        var path: String
        var branch: String
    }
    struct InitBody: Decodable {
        var path: String
        var initial_branch: String?
        var bare: Bool?
    }
    struct ResetBody: Decodable {
        var path: String
        var mode: String?
        var target: String?
        var files: [String]?
    }
    struct RestoreBody: Decodable {
        var path: String
        var files: [String]
        var staged: Bool?
        var worktree: Bool?
        var source: String?
    }
    struct AddRemoteBody: Decodable {
        var path: String
        var name: String
        var url: String
        var fetch: Bool?
        var overwrite: Bool?
    }
    struct SetConfigBody: Decodable {
        var key: String
        var value: String
        var path: String?
        var scope: String?
    }
    struct ConfigureUserBody: Decodable {
        var name: String
        var email: String
        var path: String?
        var scope: String?
    }
    struct AuthenticateBody: Decodable {
        var username: String
        var password: String
        var host: String?
        var `protocol`: String?
    }
    struct ConfigValue: Encodable { var value: String? }

    // MARK: - Calls with answers

    @Sendable func clone(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(CloneBody.self, from: request, context: context)
        var args = ["clone"]
        if let branch = body.branch { args += ["--branch", branch] }
        if let depth = body.depth {
            guard depth > 0 else { throw AtollError(.invalidArgument, "depth must be positive, got \(depth)") }
            args += ["--depth", String(depth)]
        }
        var config: [(String, String)] = []
        if body.insecure_skip_tls == true { config.append(("http.sslVerify", "false")) }
        try await git(
            context, args + ["--", body.url, body.path], credentials: Credentials(body.username, body.password), config: config,
            timeout: Self.networkTimeout)
        if let commit = body.commit_id {
            try await git(context, ["-C", body.path, "checkout", "--detach", commit, "--"])
        }
        return JSON.empty(.ok)
    }

    @Sendable func commit(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(CommitBody.self, from: request, context: context)
        let identity = [
            "GIT_AUTHOR_NAME": body.author, "GIT_AUTHOR_EMAIL": body.email, "GIT_COMMITTER_NAME": body.author, "GIT_COMMITTER_EMAIL": body.email,
        ]
        try await git(context, ["-C", body.path, "commit", "-m", body.message] + (body.allow_empty == true ? ["--allow-empty"] : []), env: identity)
        let hash = try await git(context, ["-C", body.path, "rev-parse", "HEAD"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        return try JSON.response(["hash": hash])
    }

    struct FileStatusDTO: Encodable {
        var name: String
        var staging: String
        var worktree: String
        var extra: String
    }

    struct StatusDTO: Encodable {
        var currentBranch: String
        var fileStatus: [FileStatusDTO]
        var ahead: Int?
        var behind: Int?
        var branchPublished: Bool
        var detached: Bool
        var upstream: String?
    }

    @Sendable func status(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let result = try await git(context, ["-C", path, "status", "--porcelain=v2", "--branch", "-z"])
        return try JSON.response(Self.parseStatus(result.stdout))
    }

    /// `git status --porcelain=v2 --branch -z`: branch headers, then one entry per path.
    static func parseStatus(_ output: [UInt8]) -> StatusDTO {
        var status = StatusDTO(currentBranch: "", fileStatus: [], branchPublished: false, detached: false)
        var fields = output.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }[...]
        while let line = fields.popFirst() {
            let words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            switch words.first {
            case "#":
                guard words.count >= 3 else { continue }
                switch words[1] {
                case "branch.head":
                    status.detached = words[2] == "(detached)"
                    status.currentBranch = status.detached ? "HEAD" : words[2]
                case "branch.upstream":
                    status.upstream = words[2]
                    status.branchPublished = true
                case "branch.ab" where words.count >= 4:
                    status.ahead = Int(words[2].dropFirst())
                    status.behind = Int(words[3].dropFirst())
                default: break
                }
            case "1" where words.count >= 9:
                status.fileStatus.append(entry(words[1], name: words[8...].joined(separator: " "), extra: ""))
            case "2" where words.count >= 10:
                // The original path follows as the next NUL-separated field.
                let original = fields.popFirst() ?? ""
                status.fileStatus.append(entry(words[1], name: words[9...].joined(separator: " "), extra: original))
            case "u" where words.count >= 11:
                status.fileStatus.append(
                    FileStatusDTO(name: words[10...].joined(separator: " "), staging: "Updated but unmerged", worktree: "Updated but unmerged", extra: ""))
            case "?":
                let name = String(line.dropFirst(2))
                status.fileStatus.append(FileStatusDTO(name: name, staging: "Untracked", worktree: "Untracked", extra: ""))
            default: break
            }
        }
        return status
    }

    static func entry(_ xy: String, name: String, extra: String) -> FileStatusDTO {
        let codes = Array(xy)
        return FileStatusDTO(name: name, staging: describe(codes.first ?? "."), worktree: describe(codes.count > 1 ? codes[1] : "."), extra: extra)
    }

    /// Porcelain status letters in Daytona's words.
    static func describe(_ code: Character) -> String {
        switch code {
        case "M", "T": return "Modified"
        case "A": return "Added"
        case "D": return "Deleted"
        case "R": return "Renamed"
        case "C": return "Copied"
        case "U": return "Updated but unmerged"
        default: return "Unmodified"
        }
    }

    @Sendable func branches(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let list = try await git(context, ["-C", path, "for-each-ref", "--format=%(refname:short)", "refs/heads"])
        let current = try await git(context, ["-C", path, "branch", "--show-current"])
        let name = current.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        struct Branches: Encodable {
            var branches: [String]
            var current: String?
        }
        return try JSON.response(Branches(branches: list.stdoutText.split(separator: "\n").map(String.init), current: name.isEmpty ? nil : name))
    }

    @Sendable func remotes(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        let result = try await git(context, ["-C", path, "remote", "-v"])
        struct Remote: Encodable, Hashable {
            var name: String
            var url: String
        }
        var seen: [Remote] = []
        for line in result.stdoutText.split(separator: "\n") where line.hasSuffix("(fetch)") {
            let parts = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if parts.count >= 2 { seen.append(Remote(name: String(parts[0]), url: String(parts[1]))) }
        }
        return try JSON.response(["remotes": seen])
    }

    @Sendable func history(_ request: Request, context: AtollContext) async throws -> Response {
        let path = try request.requireQuery("path")
        // Fields split by the unit separator, commits by the record separator: no message can break the parse.
        let result = try await git(context, ["-C", path, "log", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%B%x1e"])
        struct Commit: Encodable {
            var hash, author, email, timestamp, message: String
        }
        let commits = result.stdoutText.split(separator: "\u{1e}").compactMap { record -> Commit? in
            let f = record.trimmingCharacters(in: .newlines).split(separator: "\u{1f}", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 5 else { return nil }
            return Commit(hash: f[0], author: f[1], email: f[2], timestamp: f[3], message: f[4].trimmingCharacters(in: .newlines))
        }
        return try JSON.response(commits)
    }

    // MARK: - Running git

    /// A username and password for one git process, sent as HTTP basic authorization.
    struct Credentials {
        var header: String

        init?(_ username: String?, _ password: String?) {
            guard let password, !password.isEmpty else { return nil }
            header = "Authorization: Basic " + Data("\(username ?? "git"):\(password)".utf8).base64EncodedString()
        }
    }

    /// `git args` in the sandbox, from the user's home; a non-zero exit (other than
    /// `allowedExits`) is the error git reported.
    @discardableResult
    func git(
        _ context: AtollContext, _ args: [String], credentials: Credentials? = nil, config: [(String, String)] = [], env: [String: String] = [:],
        stdin: [UInt8]? = nil, timeout: Double = localTimeout, allowedExits: Set<Int32> = []
    ) async throws -> ExecResult {
        let id = try context.parameters.require("id")
        let org = try context.organization()
        for arg in args where arg.utf8.contains(0) { throw AtollError(.invalidArgument, "a git argument contains a NUL byte") }
        var environment = env
        // No prompt can ever wait for input nobody will give; messages in English, for the codes below.
        environment["GIT_TERMINAL_PROMPT"] = "0"
        environment["GIT_ASKPASS"] = "/bin/false"
        environment["LC_ALL"] = "C"
        var settings = config
        if let credentials { settings.append(("http.extraHeader", credentials.header)) }
        if !settings.isEmpty {
            // Configuration for this process only (git ≥ 2.31): nothing is written to any file.
            environment["GIT_CONFIG_COUNT"] = String(settings.count)
            for (index, (key, value)) in settings.enumerated() {
                environment["GIT_CONFIG_KEY_\(index)"] = key
                environment["GIT_CONFIG_VALUE_\(index)"] = value
            }
        }
        let result: ExecResult
        do {
            result = try await manager.toolboxGate.run(organization: org) {
                try await manager.exec(
                    id, ExecRequest(command: .argv(["git"] + args), env: environment, timeout: timeout, stdin: stdin.map { .bytes($0) } ?? .none),
                    organizationId: org)
            }
        } catch let error as AtollError where error.cause is ProcessStartFailure {
            throw AtollError(.unavailable, "git cannot run in this sandbox: \(redact(error.description))")
        }
        if result.timedOut {
            throw ToolboxError(
                error: AtollError(.timeout, "git \(args.first { !$0.hasPrefix("-") && $0 != "-C" } ?? "") timed out after \(Int(timeout)) s"),
                daemonCode: "GIT_TRANSPORT_FAILED")
        }
        guard result.exitCode == 0 || allowedExits.contains(result.exitCode) else {
            throw Self.failure(result.stderrText.isEmpty ? result.stdoutText : result.stderrText, credentials: credentials)
        }
        return result
    }

    /// git's message as the error, with the daemon code of what it says.
    static func failure(_ output: String, credentials: Credentials?) -> ToolboxError {
        var message = output.trimmingCharacters(in: .whitespacesAndNewlines)
        if let credentials { message = message.replacingOccurrences(of: credentials.header, with: "Authorization: (redacted)") }
        message = String(message.prefix(4000))
        let lower = message.lowercased()
        func error(_ code: AtollError.Code, _ daemon: String) -> ToolboxError {
            ToolboxError(error: AtollError(code, "git: \(message)"), daemonCode: daemon)
        }
        if lower.contains("authentication failed") || lower.contains("could not read username") || lower.contains("could not read password")
            || lower.contains("terminal prompts disabled") || lower.contains("403")
        {
            return error(.unauthenticated, "GIT_AUTH_FAILED")
        }
        if lower.contains("already exists") && lower.contains("branch") { return error(.conflict, "GIT_BRANCH_EXISTS") }
        if lower.contains("did not match any") || lower.contains("remote branch") && lower.contains("not found")
            || lower.contains("branch") && lower.contains("not found") || lower.contains("invalid reference") || lower.contains("couldn't find remote ref")
        {
            return error(.notFound, "GIT_BRANCH_NOT_FOUND")
        }
        if lower.contains("not a git repository") || lower.contains("does not appear to be a git repository")
            || lower.contains("repository")
                && lower.contains("not found")
            || lower.contains("does not exist")
        {
            return error(.notFound, "GIT_REPO_NOT_FOUND")
        }
        if lower.contains("[rejected]") || lower.contains("failed to push") { return error(.conflict, "GIT_PUSH_REJECTED") }
        if lower.contains("[remote rejected]") { return error(.conflict, "GIT_REMOTE_REJECTED") }
        if lower.contains("conflict") { return error(.conflict, "GIT_MERGE_CONFLICT") }
        if lower.contains("would be overwritten") || lower.contains("commit your changes or stash") { return error(.conflict, "GIT_DIRTY_WORKTREE") }
        if lower.contains("could not resolve host") || lower.contains("unable to access") || lower.contains("connection refused")
            || lower.contains("could not read from remote")
        {
            return error(.unavailable, "GIT_TRANSPORT_FAILED")
        }
        return ToolboxError(error: AtollError(.invalidArgument, "git: \(message)"), daemonCode: "GIT_ERROR")
    }

    /// `git config` in `scope`: `--global` (the default) or the repository at `path` (local),
    /// followed by `rest`. The system scope is refused: the sandbox's user cannot write it.
    static func config(_ scope: String?, path: String?, _ rest: [String]) throws -> [String] {
        switch scope ?? "global" {
        case "global": return ["config", "--global"] + rest
        case "local":
            guard let path, !path.isEmpty else { throw AtollError(.invalidArgument, "scope local needs the repository's path") }
            return ["-C", path, "config", "--local"] + rest
        case "system": throw AtollError(.forbidden, "scope system: the sandbox's user cannot change /etc/gitconfig; use global or local")
        default: throw AtollError(.invalidArgument, "scope must be global, local or system, got \"\(scope!.prefix(16))\"")
        }
    }
}
