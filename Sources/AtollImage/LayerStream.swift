public import AtollCore
import AtollLinux
import Crypto
import Glibc

/// How a layer blob is compressed, from its first bytes (media types lie more often than magic).
public enum LayerCompression: String, Sendable {
    case none, gzip, zstd

    public static func detect(_ path: String) throws -> LayerCompression {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        let n = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4) }
        if n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b { return .gzip }
        if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] { return .zstd }
        return .none
    }
}

/// Streams one layer blob through its decompressor (Debian's `zstd` or `gzip` in a child
/// process, which runs on another core while this one unpacks), the SHA-256 that must equal the
/// layer's diff id, and the unpacker.
public enum LayerStream {
    public static func unpack(blob: String, into root: String, diffID: String?) throws -> UnpackReport {
        let compression = try LayerCompression.detect(blob)
        var hasher = SHA256()
        let unpacker = try LayerUnpacker(root: root)
        let reader: TarReader
        var filter: HostFilter?
        switch compression {
        case .none:
            let fd = OwnedFD(open(blob, O_RDONLY | O_CLOEXEC))
            guard fd.raw >= 0 else { throw SystemError.last("open", blob) }
            reader = TarReader { buffer in
                while true {
                    let n = read(fd.raw, buffer.baseAddress, buffer.count)
                    if n >= 0 {
                        hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                        return n
                    }
                    if errno != EINTR { throw SystemError.last("read", blob) }
                }
            }
        case .gzip, .zstd:
            let tool = compression == .zstd ? try HostCommand.locate("zstd", package: "zstd") : try HostCommand.locate("gzip", package: "gzip")
            let started = try HostFilter(tool, compression == .zstd ? ["-dcq"] : ["-dc"], inputPath: blob)
            filter = started
            reader = TarReader { buffer in
                let n = try started.read(into: buffer)
                hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                return n
            }
        }
        do {
            try unpacker.unpack(reader)
            try reader.drain()
            try filter?.finish()
        } catch let error as AtollError {
            throw AtollError(error.code, "layer \(diffID ?? blob): \(error.message)", cause: error.cause)
        }
        let actual = "sha256:" + Hex.string(hasher.finalize())
        if let diffID, actual != diffID {
            throw AtollError(.invalidArgument, "layer \(blob): the uncompressed stream's digest is \(actual), not the diff id \(diffID)")
        }
        return unpacker.report
    }

    /// Unpacks the tar a helper program writes to its standard output (a build step's upper
    /// directory, a stage's files for COPY --from); returns the stream's digest (the new
    /// layer's diff id) and what was unpacked.
    public static func unpack(
        command: String, arguments: [String], environment: [String], into root: String, source: LayerUnpacker.Source,
        rename: (@Sendable (String) -> String)? = nil
    ) throws -> (diffID: String, report: UnpackReport) {
        var hasher = SHA256()
        let unpacker = try LayerUnpacker(root: root, source: source)
        unpacker.rename = rename
        let filter = try HostFilter(command, arguments, inputPath: "/dev/null", environment: environment)
        let reader = TarReader { buffer in
            let n = try filter.read(into: buffer)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            return n
        }
        try unpacker.unpack(reader)
        try reader.drain()
        try filter.finish()
        return ("sha256:" + Hex.string(hasher.finalize()), unpacker.report)
    }
}
