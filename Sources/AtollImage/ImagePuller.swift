public import AtollCore
import AtollLinux
import Foundation
import Glibc

/// Where images come from besides the registries themselves, as Docker's daemon.json has it.
public struct RegistrySettings: Sendable, Codable, Equatable {
    /// Mirrors of Docker Hub ("registry-mirrors"): URLs; an `http://` mirror is reached over plain HTTP.
    public var mirrors: [String]
    /// Registries reached over plain HTTP ("insecure-registries"): `host[:port]`.
    public var insecureRegistries: [String]

    public init(mirrors: [String] = [], insecureRegistries: [String] = []) {
        self.mirrors = mirrors
        self.insecureRegistries = insecureRegistries
    }

    /// containers-registries.conf(5) for skopeo: Docker Hub's mirrors (tried in order, Docker Hub
    /// last) and the plain-HTTP registries.
    public func registriesConf() throws -> String {
        var lines = ["unqualified-search-registries = [\"docker.io\"]", ""]
        for registry in insecureRegistries {
            try Self.checkHost(registry)
            lines += ["[[registry]]", "location = \"\(registry)\"", "insecure = true", ""]
        }
        if !mirrors.isEmpty {
            lines += ["[[registry]]", "prefix = \"docker.io\"", "location = \"docker.io\"", ""]
            for mirror in mirrors {
                let plain = mirror.hasPrefix("http://")
                var host = mirror.replacingOccurrences(of: "http://", with: "").replacingOccurrences(of: "https://", with: "")
                while host.hasSuffix("/") { host.removeLast() }
                try Self.checkHost(host)
                lines += ["[[registry.mirror]]", "location = \"\(host)\"", "insecure = \(plain || insecureRegistries.contains(host))", ""]
            }
        }
        return lines.joined(separator: "\n")
    }

    static func checkHost(_ host: String) throws {
        guard ImageReference.isRegistry(host) || (host.contains("/") && host.split(separator: "/").allSatisfy { ImageReference.isRegistry(String($0)) }) else {
            throw AtollError(.invalidArgument, "invalid registry \"\(host.prefix(80))\" in the registry settings: host[:port] expected")
        }
    }
}

/// Pulls and imports images into the store. The transport is Debian's skopeo (registry v2 and
/// OCI distribution, anonymous bearer tokens, stored credentials, mirrors, plain HTTP, image
/// indexes resolved to linux/amd64, digests checked as blobs arrive, layers fetched in
/// parallel); it writes blobs straight into the store's blob directory, and Atoll then checks
/// every digest again and unpacks the layers itself (`ImageStore.importLayout`).
public struct ImagePuller: Sendable {
    public let store: ImageStore
    public let settings: RegistrySettings

    public init(store: ImageStore, settings: RegistrySettings) {
        self.store = store
        self.settings = settings
    }

    /// Credentials `atoll login` stored (containers-auth.json(5)); 0600, root's.
    public var authFile: String { "\(store.directory)/auth.json" }

    /// Pulls `reference` (unless `refresh` is false and the store has it already).
    public func pull(_ reference: ImageReference, refresh: Bool = false, progress: (String) -> Void = { _ in }) throws -> StoredImage {
        if !refresh, let image = store.image(reference.description) { return image }
        return try copy(from: "docker://\(reference)", as: reference.description, progress: progress)
    }

    /// Imports a `docker save` archive or an OCI layout tarball (`oci-archive`), as `name` (or
    /// the name the archive carries).
    public func importArchive(_ path: String, as name: String?, progress: (String) -> Void = { _ in }) throws -> StoredImage {
        guard KernelFile.exists(path) else { throw AtollError(.notFound, "image archive \(path) not found") }
        let listing = try HostProcess.run(try HostCommand.locate("tar", package: "tar"), ["-tf", path], environment: [])
        guard listing.succeeded else { throw AtollError(.invalidArgument, "\(path) is not a tar archive (docker save or OCI layout)") }
        let members = Set(
            String(decoding: listing.stdout, as: UTF8.self).split(separator: "\n").map { $0.hasPrefix("./") ? String($0.dropFirst(2)) : String($0) })
        let transport: String
        if members.contains("oci-layout") {
            transport = "oci-archive:\(path)"
        } else if members.contains("manifest.json") {
            transport = "docker-archive:\(path)"
        } else {
            throw AtollError(.invalidArgument, "\(path) is neither a docker save archive (manifest.json) nor an OCI layout (oci-layout)")
        }
        let reference =
            try name.map { try ImageReference($0).description }
            ?? "localhost/imported/\(URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent.lowercased().filter { $0.isLetter || $0.isNumber || $0 == "-" }):latest"
        return try copy(from: transport, as: reference, progress: progress)
    }

    /// Checks the credentials against the registry (`skopeo login`) and stores them.
    public func login(registry: String, username: String, password: String) throws {
        try RegistrySettings.checkHost(registry)
        let conf = try writeConfiguration()
        defer { unlink(conf.registries) }
        let input = "\(store.directory)/tmp/login-\(UUID().uuidString.lowercased())"
        try ImageStore.writeAtomically(Data(password.utf8), to: input)
        defer { unlink(input) }
        let filter = try HostFilter(
            try skopeo(), ["--registries-conf", conf.registries, "login", "--authfile", authFile, "--username", username, "--password-stdin", registry],
            inputPath: input, environment: Self.environment)
        _ = try drain(filter) { _ in }
        do {
            try filter.finish()
        } catch let error as AtollError {
            throw AtollError(.unauthenticated, "login to \(registry) failed: \(error.message)")
        }
    }

    static let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=/var/tmp"]

    func skopeo() throws -> String { try HostCommand.locate("skopeo", package: "skopeo") }

    /// The registries.conf and the signature policy skopeo runs with (Atoll checks digests, not
    /// signatures: the policy accepts any image, as Docker does).
    func writeConfiguration() throws -> (registries: String, policy: String) {
        let registries = "\(store.directory)/tmp/registries-\(UUID().uuidString.lowercased()).conf"
        try ImageStore.writeAtomically(Data(try settings.registriesConf().utf8), to: registries)
        let policy = "\(store.directory)/policy.json"
        if !KernelFile.exists(policy) {
            try ImageStore.writeAtomically(Data(#"{"default":[{"type":"insecureAcceptAnything"}]}"#.utf8), to: policy)
        }
        return (registries, policy)
    }

    func copy(from source: String, as reference: String, progress: (String) -> Void) throws -> StoredImage {
        let layout = try store.scratch("pull")
        defer { try? ImageStore.removeTree(layout) }
        let conf = try writeConfiguration()
        defer { unlink(conf.registries) }
        var arguments = ["--registries-conf", conf.registries, "--policy", conf.policy, "--override-os", "linux", "--override-arch", "amd64", "copy"]
        if KernelFile.exists(authFile) { arguments += ["--src-authfile", authFile] }
        arguments += ["--dest-shared-blob-dir", store.blobsDirectory, source, "oci:\(layout)/oci:atoll"]
        progress("pulling \(reference)")
        let filter = try HostFilter(try skopeo(), arguments, inputPath: "/dev/null", environment: Self.environment)
        _ = try drain(filter, progress)
        do {
            try filter.finish()
        } catch let error as AtollError {
            throw AtollError(
                .notFound, "cannot pull \(reference): \(error.message.replacingOccurrences(of: "/usr/bin/skopeo failed (wait status 256): ", with: ""))")
        }
        return try store.importLayout("\(layout)/oci", refName: "atoll", as: reference, progress: progress)
    }

    /// Hands skopeo's output to `progress` line by line.
    func drain(_ filter: HostFilter, _ progress: (String) -> Void) throws -> Int {
        var pending = [UInt8]()
        var total = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = try filter.read(into: buffer)
            if n == 0 { break }
            total += n
            pending.append(contentsOf: buffer[0..<n])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                if !line.isEmpty { progress(line) }
                pending.removeSubrange(...newline)
            }
        }
        if !pending.isEmpty { progress(String(decoding: pending, as: UTF8.self)) }
        return total
    }
}
