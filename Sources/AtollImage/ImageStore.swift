public import AtollCore
import AtollLinux
import Crypto
import Foundation
import Glibc

/// What an image's config says about running it (the OCI image config's `config` object).
public struct ImageConfiguration: Codable, Sendable, Hashable {
    public var env: [String]
    public var workingDir: String?
    public var user: String?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var exposedPorts: [String]
    public var labels: [String: String]
    public var shell: [String]?

    public init(
        env: [String] = [], workingDir: String? = nil, user: String? = nil, entrypoint: [String]? = nil, cmd: [String]? = nil,
        exposedPorts: [String] = [], labels: [String: String] = [:], shell: [String]? = nil
    ) {
        self.env = env
        self.workingDir = workingDir
        self.user = user
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.exposedPorts = exposedPorts
        self.labels = labels
        self.shell = shell
    }

    /// The environment as a dictionary (a later `KEY=` wins, as in Docker).
    public var environment: [String: String] {
        var result: [String: String] = [:]
        for item in env {
            guard let equals = item.firstIndex(of: "=") else { continue }
            result[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        return result
    }
}

/// One layer of a stored image.
public struct StoredLayer: Codable, Sendable, Hashable {
    /// Digest of the blob as stored (compressed or not).
    public var digest: String
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`): what layers are shared by.
    public var diffID: String
    public var mediaType: String
    public var size: Int
}

/// An image in the store: the manifest's layers (bottom first) and the config.
public struct StoredImage: Codable, Sendable, Hashable {
    /// The canonical reference it was pulled or imported as.
    public var reference: String
    public var manifestDigest: String
    public var configDigest: String
    public var layers: [StoredLayer]
    public var config: ImageConfiguration
    /// Seconds since the epoch.
    public var storedAt: Double
    /// Bytes of the blobs (compressed layers).
    public var size: Int { layers.reduce(0) { $0 + $1.size } }
}

/// Atoll's image store under the data directory:
///
/// - `blobs/sha256/<hex>`: content-addressed blobs (manifests, configs, layers), each checked
///   against its digest before use;
/// - `layers/<hex of diff id>`: each layer unpacked once, shared by every image that has it, and
///   used as an overlay lower layer directly;
/// - `images/<hex of sha256(reference)>.json`: what a reference names.
///
/// Thread-safe: writes are atomic renames, and a layer two pulls unpack at once is kept once.
public final class ImageStore: Sendable {
    public let directory: String
    public var blobsDirectory: String { "\(directory)/blobs" }
    var layersDirectory: String { "\(directory)/layers" }
    var recordsDirectory: String { "\(directory)/images" }
    var scratchDirectory: String { "\(directory)/tmp" }

    public init(directory: String) throws {
        self.directory = directory
        for path in [directory, blobsDirectory, "\(blobsDirectory)/sha256", layersDirectory, recordsDirectory, scratchDirectory] {
            try Self.makeDirectory(path)
        }
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError.last("mkdir", path) }
    }

    /// Where a blob is (or will be) stored.
    public func blobPath(_ digest: String) throws -> String {
        guard ImageReference.isDigest(digest) else { throw AtollError(.invalidArgument, "invalid digest \"\(digest.prefix(80))\"") }
        return "\(blobsDirectory)/sha256/\(digest.dropFirst(7))"
    }

    /// The unpacked root of a layer, by diff id.
    public func layerRoot(_ diffID: String) throws -> String {
        guard ImageReference.isDigest(diffID) else { throw AtollError(.invalidArgument, "invalid diff id \"\(diffID.prefix(80))\"") }
        return "\(layersDirectory)/\(diffID.dropFirst(7))"
    }

    /// A fresh scratch directory on the store's filesystem (for pulls and unpacks).
    public func scratch(_ purpose: String) throws -> String {
        let path = "\(scratchDirectory)/\(purpose)-\(UUID().uuidString.lowercased())"
        try Self.makeDirectory(path)
        return path
    }

    // MARK: - Records

    func recordPath(_ reference: String) -> String {
        "\(recordsDirectory)/\(Hex.string(SHA256.hash(data: Array(reference.utf8)))).json"
    }

    public func image(_ reference: String) -> StoredImage? {
        guard let data = FileManager.default.contents(atPath: recordPath(reference)) else { return nil }
        return try? JSONDecoder().decode(StoredImage.self, from: data)
    }

    public func images() -> [StoredImage] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: recordsDirectory)) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            FileManager.default.contents(atPath: "\(recordsDirectory)/\(name)").flatMap { try? JSONDecoder().decode(StoredImage.self, from: $0) }
        }.sorted { $0.reference < $1.reference }
    }

    func save(_ image: StoredImage) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try Self.writeAtomically(try encoder.encode(image), to: recordPath(image.reference))
    }

    /// Forgets a reference (its layers and blobs go at the next `collectGarbage`).
    public func remove(_ reference: String) throws -> Bool {
        let path = recordPath(reference)
        guard KernelFile.exists(path) else { return false }
        guard unlink(path) == 0 else { throw SystemError.last("unlink", path) }
        return true
    }

    static func writeAtomically(_ data: Data, to path: String) throws {
        let temporary = "\(path).tmp-\(UUID().uuidString.lowercased())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.last("open", temporary) }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else {
            unlink(temporary)
            throw SystemError.last("write", temporary)
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw SystemError.last("rename", path)
        }
    }

    // MARK: - Import

    /// Records the image an OCI layout's index names (`refName` in its annotations, or its only
    /// manifest), with blobs in this store's blob directory (`skopeo copy
    /// --dest-shared-blob-dir`); checks the manifest and config digests and unpacks every layer
    /// not yet unpacked (checking its digest and diff id).
    public func importLayout(_ layout: String, refName: String?, as reference: String, progress: (String) -> Void = { _ in }) throws -> StoredImage {
        let indexData = try Self.read("\(layout)/index.json")
        let index = try Self.decode(OCIIndex.self, indexData, what: "the OCI index \(layout)/index.json")
        let candidates = index.manifests.filter { refName == nil || $0.annotations?["org.opencontainers.image.ref.name"] == refName }
        guard let descriptor = candidates.first, candidates.count == 1 || refName != nil else {
            throw AtollError(.invalidArgument, "the OCI layout \(layout) has \(index.manifests.count) manifests and none is named \(refName ?? "(any)")")
        }
        let manifestData = try verifiedBlob(descriptor.digest, in: layout)
        let manifest = try Self.decode(OCIManifest.self, manifestData, what: "manifest \(descriptor.digest)")
        guard manifest.layers.count <= 128 else {
            throw AtollError(.invalidArgument, "image \(reference) has \(manifest.layers.count) layers; Atoll mounts at most 128")
        }
        let configData = try verifiedBlob(manifest.config.digest, in: layout)
        let config = try Self.decode(OCIConfig.self, configData, what: "image config \(manifest.config.digest)")
        if let os = config.os, os != "linux" { throw AtollError(.invalidArgument, "image \(reference) is for \(os), not linux") }
        if let arch = config.architecture, arch != "amd64" { throw AtollError(.invalidArgument, "image \(reference) is for \(arch), not amd64") }
        let diffIDs = config.rootfs?.diff_ids ?? []
        guard diffIDs.count == manifest.layers.count else {
            throw AtollError(.invalidArgument, "image \(reference): the config lists \(diffIDs.count) diff ids for \(manifest.layers.count) layers")
        }
        var layers: [StoredLayer] = []
        for (number, (descriptor, diffID)) in zip(manifest.layers, diffIDs).enumerated() {
            let layer = StoredLayer(digest: descriptor.digest, diffID: diffID, mediaType: descriptor.mediaType ?? "", size: descriptor.size ?? 0)
            try ensureUnpacked(layer, from: try blobPath(descriptor.digest, in: layout)) { progress("layer \(number + 1)/\(manifest.layers.count) \($0)") }
            layers.append(layer)
        }
        let settings = config.config
        let image = StoredImage(
            reference: reference, manifestDigest: descriptor.digest, configDigest: manifest.config.digest, layers: layers,
            config: ImageConfiguration(
                env: settings?.Env ?? [], workingDir: settings?.WorkingDir.flatMap { $0.isEmpty ? nil : $0 },
                user: settings?.User.flatMap { $0.isEmpty ? nil : $0 }, entrypoint: settings?.Entrypoint, cmd: settings?.Cmd,
                exposedPorts: (settings?.ExposedPorts?.keys).map { Array($0).sorted() } ?? [], labels: settings?.Labels ?? [:],
                shell: settings?.Shell),
            storedAt: Date().timeIntervalSince1970)
        try save(image)
        return image
    }

    /// Blobs live in the shared directory, or in the layout's own `blobs/` (a layout made without
    /// a shared directory).
    func blobPath(_ digest: String, in layout: String) throws -> String {
        let shared = try blobPath(digest)
        if KernelFile.exists(shared) { return shared }
        let own = "\(layout)/blobs/sha256/\(digest.dropFirst(7))"
        guard KernelFile.exists(own) else { throw AtollError(.notFound, "blob \(digest) is missing from the store and from \(layout)") }
        return own
    }

    func verifiedBlob(_ digest: String, in layout: String) throws -> Data {
        let path = try blobPath(digest, in: layout)
        let data = try Self.read(path, limit: 4 << 20)
        let actual = "sha256:" + Hex.string(SHA256.hash(data: data))
        guard actual == digest else { throw AtollError(.invalidArgument, "blob \(path) is corrupt: its digest is \(actual), not \(digest)") }
        return data
    }

    /// Unpacks a layer blob unless its diff id is already unpacked; the blob's digest and the
    /// uncompressed stream's diff id are both checked, and a layer that fails either leaves nothing.
    public func ensureUnpacked(_ layer: StoredLayer, from blob: String, progress: (String) -> Void = { _ in }) throws {
        let final = try layerRoot(layer.diffID)
        if KernelFile.isDirectory(final) {
            progress("\(layer.diffID.prefix(19)) already unpacked")
            return
        }
        let actual = try Self.sha256(of: blob)
        guard actual == layer.digest else {
            throw AtollError(.invalidArgument, "layer blob \(layer.digest) is corrupt: its digest is \(actual)")
        }
        let staging = try scratch("layer")
        defer { try? Self.removeTree(staging) }
        let root = "\(staging)/root"
        try Self.makeDirectory(root)
        guard chmod(root, 0o755) == 0 else { throw SystemError.last("chmod", root) }
        let started = Date()
        let report = try LayerStream.unpack(blob: blob, into: root, diffID: layer.diffID)
        guard rename(root, final) == 0 else {
            // Another pull unpacked the same layer meanwhile: keep that one.
            if errno == EEXIST || errno == ENOTEMPTY { return }
            throw SystemError.last("rename", final)
        }
        let seconds = Date().timeIntervalSince(started)
        progress("\(layer.diffID.prefix(19)) unpacked: \(report.entries) entries, \(report.bytes >> 20) MiB in \(String(format: "%.2f", seconds)) s")
    }

    /// A new layer from what `produce` unpacks into a fresh directory, kept under its diff id
    /// (an identical layer already there is used instead).
    public func makeLayer(
        _ produce: (String) throws -> (diffID: String, report: UnpackReport)
    ) throws -> (diffID: String, report: UnpackReport) {
        let staging = try scratch("layer")
        defer { try? Self.removeTree(staging) }
        let root = "\(staging)/root"
        try Self.makeDirectory(root)
        guard chmod(root, 0o755) == 0 else { throw SystemError.last("chmod", root) }
        let result = try produce(root)
        let final = try layerRoot(result.diffID)
        if !KernelFile.isDirectory(final), rename(root, final) != 0, errno != EEXIST, errno != ENOTEMPTY {
            throw SystemError.last("rename", final)
        }
        return result
    }

    /// A layer holding only the directory `path` (and its parents), root's, 0755: what a
    /// WORKDIR makes when the stage lacks the directory. Named by a digest of its description.
    public func makeDirectoryLayer(_ path: String) throws -> String {
        let components = try LayerPath(String(path.drop { $0 == "/" }), entry: path).components
        return try makeDirectoriesLayer(components.indices.map { (components[...$0].joined(separator: "/"), 0o755) })
    }

    /// The bottom layer of every registered snapshot: the directories the runtime mounts on or
    /// writes to (`/dev`, `/proc`, `/sys`, `/tmp`, `/etc`, `/run`), for images that lack them (a
    /// `FROM scratch` image, a one-file image). An image's own directories sit above it.
    public func runtimeBaseLayer() throws -> String {
        try layerRoot(try makeDirectoriesLayer([("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("run", 0o755), ("sys", 0o555), ("tmp", 0o1777)]))
    }

    /// A layer of root-owned directories (relative paths, parents first), named by a digest of
    /// its description.
    func makeDirectoriesLayer(_ directories: [(String, UInt32)]) throws -> String {
        let description = directories.map { "\($0.0):\(String($0.1, radix: 8))" }.joined(separator: "\u{0}")
        let diffID = "sha256:" + Hex.string(SHA256.hash(data: Array("atoll directory layer\u{0}\(description)".utf8)))
        if KernelFile.isDirectory(try layerRoot(diffID)) { return diffID }
        _ = try makeLayer { root in
            let unpacker = try LayerUnpacker(root: root)
            let empty = TarReader { _ in 0 }
            for (path, mode) in directories {
                try unpacker.apply(TarEntry(name: path + "/", kind: .directory, mode: mode), reader: empty)
            }
            try unpacker.finish()
            return (diffID, unpacker.report)
        }
        return diffID
    }

    // MARK: - Build cache

    var cacheDirectory: String { "\(directory)/build-cache" }

    /// The layer a build step with this key made before, if it is still unpacked.
    public func cachedLayer(_ key: String) -> String? {
        guard let data = FileManager.default.contents(atPath: "\(cacheDirectory)/\(key)") else { return nil }
        let diffID = String(decoding: data, as: UTF8.self)
        guard let root = try? layerRoot(diffID), KernelFile.isDirectory(root) else { return nil }
        return diffID
    }

    /// Remembers the layer a build step made.
    public func rememberLayer(_ key: String, diffID: String) throws {
        try Self.makeDirectory(cacheDirectory)
        try Self.writeAtomically(Data(diffID.utf8), to: "\(cacheDirectory)/\(key)")
    }

    /// Layers and blobs no image record and no entry of `inUse` (diff ids of layers snapshots
    /// mount) refers to are removed. Returns the bytes of blobs freed.
    @discardableResult
    public func collectGarbage(keepingLayers inUse: Set<String>) throws -> Int {
        let images = images()
        var keepBlobs = Set<String>()
        var keepLayers = Set(inUse.map { String($0.dropFirst(7)) })
        for image in images {
            keepBlobs.insert(String(image.manifestDigest.dropFirst(7)))
            keepBlobs.insert(String(image.configDigest.dropFirst(7)))
            for layer in image.layers {
                keepBlobs.insert(String(layer.digest.dropFirst(7)))
                keepLayers.insert(String(layer.diffID.dropFirst(7)))
            }
        }
        // A pull under way writes blobs and layers before its image record exists: anything
        // changed in the last hour is left for a later collection.
        let cutoff = Date().timeIntervalSince1970 - 3600
        func recent(_ path: String) -> Bool {
            var st = stat()
            return lstat(path, &st) == 0 && Double(st.st_ctim.tv_sec) > cutoff
        }
        var freed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(blobsDirectory)/sha256")) ?? [] where !keepBlobs.contains(name) {
            let path = "\(blobsDirectory)/sha256/\(name)"
            var st = stat()
            guard lstat(path, &st) == 0, Double(st.st_ctim.tv_sec) <= cutoff else { continue }
            freed += Int(st.st_size)
            unlink(path)
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: layersDirectory)) ?? [] {
            // `.<hex>.bytes` records a layer's size; it goes with the layer.
            let layer = name.hasPrefix(".") ? String(name.dropFirst().split(separator: ".").first ?? "") : name
            if !keepLayers.contains(layer) && !recent("\(layersDirectory)/\(name)") { try Self.removeTree("\(layersDirectory)/\(name)") }
        }
        return freed
    }

    /// Bytes the unpacked layers take on disk (allocated blocks). A layer never changes, so its
    /// size is measured once (a walk of every entry) and kept next to it.
    public func diskBytes(ofLayers diffIDs: [String]) -> Int {
        diffIDs.reduce(0) { total, id in total + layerBytes(id) }
    }

    func layerBytes(_ diffID: String) -> Int {
        guard let root = try? layerRoot(diffID), KernelFile.isDirectory(root) else { return 0 }
        let record = "\(layersDirectory)/.\(diffID.dropFirst(7)).bytes"
        if let text = try? String(contentsOfFile: record, encoding: .utf8), let bytes = Int(text) { return bytes }
        let bytes = Self.allocatedBytes(root)
        try? Self.writeAtomically(Data(String(bytes).utf8), to: record)
        return bytes
    }

    static func allocatedBytes(_ path: String) -> Int {
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total = 0
        while let name = enumerator.nextObject() as? String {
            var st = stat()
            if lstat("\(path)/\(name)", &st) == 0 { total += Int(st.st_blocks) * 512 }
        }
        return total
    }

    // MARK: - Helpers

    static func read(_ path: String, limit: Int = 16 << 20) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("read", path)
            }
            if n == 0 { return data }
            data.append(contentsOf: buffer[0..<n])
            guard data.count <= limit else { throw AtollError(.invalidArgument, "\(path) is larger than \(limit) bytes") }
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ data: Data, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw AtollError(.invalidArgument, "\(what) is not valid: \(error)")
        }
    }

    /// `sha256:<hex>` of a file, streamed.
    public static func sha256(of path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        defer { close(fd) }
        var hasher = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("read", path)
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return "sha256:" + Hex.string(hasher.finalize())
    }

    /// Removes a directory tree Atoll made (never following symlinks: `rm` semantics of
    /// FileManager remove symlinks themselves).
    public static func removeTree(_ path: String) throws {
        guard KernelFile.exists(path) else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw AtollError(.system, "cannot remove \(path): \(error.localizedDescription)")
        }
    }
}

// MARK: - OCI documents (only the fields Atoll reads)

struct OCIDescriptor: Decodable {
    var mediaType: String?
    var digest: String
    var size: Int?
    var annotations: [String: String]?
}

struct OCIIndex: Decodable {
    var manifests: [OCIDescriptor]
}

struct OCIManifest: Decodable {
    var config: OCIDescriptor
    var layers: [OCIDescriptor]
}

struct OCIConfig: Decodable {
    struct Settings: Decodable {
        var Env: [String]?
        var WorkingDir: String?
        var User: String?
        var Entrypoint: [String]?
        var Cmd: [String]?
        var ExposedPorts: [String: EmptyObject]?
        var Labels: [String: String]?
        var Shell: [String]?
    }

    struct EmptyObject: Decodable {}

    struct RootFS: Decodable {
        var diff_ids: [String]?
    }

    var architecture: String?
    var os: String?
    var config: Settings?
    var rootfs: RootFS?
}

/// SHA-256 of bytes in memory (cache keys, names derived from content).
public enum ImageDigest {
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
}
