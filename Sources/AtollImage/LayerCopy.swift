public import AtollCore
import AtollLinux
import Foundation
import Glibc

/// COPY --from: files of a stage (the merged view of its layers, mounted read-only overlayfs in
/// a private mount namespace of a helper) become a new layer, placed at the destination, with
/// owners and modes as `--chown` / `--chmod` say. GNU tar reads the merged view; Atoll's
/// unpacker writes the layer (so the names are checked like any layer's).
public enum LayerCopy {
    public struct Request: Sendable {
        /// The stage's layers, top first.
        public var layers: [String]
        /// Absolute source path in the stage.
        public var source: String
        /// Absolute destination; ending in `/` (or the source a directory) means "into".
        public var destination: String
        /// Numeric `uid:gid` for every copied entry (`--chown`).
        public var owner: (uid: Int, gid: Int)?
        /// Octal mode for every copied entry (`--chmod`).
        public var mode: Int?

        public init(layers: [String], source: String, destination: String, owner: (uid: Int, gid: Int)? = nil, mode: Int? = nil) {
            self.layers = layers
            self.source = source
            self.destination = destination
            self.owner = owner
            self.mode = mode
        }
    }

    public static func copy(_ request: Request, store: ImageStore) throws -> (diffID: String, report: UnpackReport) {
        let source = try LayerPath(String(request.source.drop { $0 == "/" }), entry: request.source)
        let destination = try LayerPath(String(request.destination.drop { $0 == "/" }), entry: request.destination)
        // The helper's root is the host's: a symlink on the source path would lead its `cd`
        // out of the stage. Layers never change once made, so this check holds for the copy.
        for end in source.components.indices {
            let prefix = Array(source.components[...end])
            let kind = KernelFileTree.kind(in: request.layers, prefix)
            if kind == .symlink && end < source.components.count - 1 {
                throw AtollError(.invalidArgument, "COPY --from: \(prefix.joined(separator: "/")) on the source path is a symlink, which COPY does not follow")
            }
            if kind == .missing { throw AtollError(.notFound, "COPY --from: \(request.source) does not exist in the stage") }
        }
        guard request.layers.count >= 1, request.layers.allSatisfy({ !$0.contains(":") && !$0.contains(",") }) else {
            throw AtollError(.invalidArgument, "COPY --from: the stage's layer paths cannot be given to overlayfs")
        }
        let lowerdir = request.layers.joined(separator: ":")
        guard lowerdir.utf8.count < 3500 else {
            throw AtollError(.invalidArgument, "COPY --from: the stage has too many layers (\(request.layers.count)) to mount its merged view")
        }
        let mountPoint = try store.scratch("copy")
        defer { try? ImageStore.removeTree(mountPoint) }
        var tarOptions = "--numeric-owner --xattrs --xattrs-include='user.*' --format=posix --pax-option=delete=atime,delete=ctime"
        if let owner = request.owner { tarOptions += " --owner=\(owner.uid) --group=\(owner.gid)" }
        if let mode = request.mode { tarOptions += " --mode=\(String(mode, radix: 8))" }
        // One layer is its own merged view; overlayfs wants two lowers or an upper.
        let mount =
            request.layers.count == 1
            ? "mount --bind -o ro \"$2\" \"$1\" && mount -o remount,bind,ro \"$1\""
            : "mount -t overlay overlay -o ro,lowerdir=\"$2\" \"$1\""
        let script = """
            set -euo pipefail
            \(mount)
            cd "$1"
            test -e "$3" || test -L "$3" || { echo "COPY --from: $3 does not exist in the stage" >&2; exit 3; }
            if test -d "$3" && ! test -L "$3"; then cd "$3"; exec tar \(tarOptions) -cf - .; fi
            cd "$(dirname "$3")"
            exec tar \(tarOptions) -cf - "$(basename "$3")"
            """
        let sourceIsDirectory = KernelFileTree.kind(in: request.layers, source.components) == .directory
        let into = request.destination.hasSuffix("/") || sourceIsDirectory
        let prefix = destination.components.joined(separator: "/")
        let leaf = source.leaf
        let rename: @Sendable (String) -> String = { name in
            let trimmed = name.hasPrefix("./") ? String(name.dropFirst(2)) : name
            if into { return trimmed.isEmpty || trimmed == "." ? prefix : prefix.isEmpty ? trimmed : "\(prefix)/\(trimmed)" }
            // A single file copied under a new name.
            return trimmed == leaf ? prefix : "\(prefix)/\(trimmed)"
        }
        let unshare = try HostCommand.locate("unshare", package: "util-linux")
        let bash = try HostCommand.locate("bash", package: "bash")
        let relativeSource = source.isRoot ? "." : source.components.joined(separator: "/")
        return try store.makeLayer { root in
            try LayerStream.unpack(
                command: unshare,
                arguments: [
                    "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", bash, "-c", script, "atoll-copy", mountPoint,
                    request.layers.count == 1 ? request.layers[0] : lowerdir, relativeSource,
                ],
                environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"], into: root, source: .imageLayer, rename: rename)
        }
    }
}

/// Lookups in a stack of layers (top first) without mounting them.
public enum KernelFileTree {
    public enum Kind: Sendable { case missing, directory, symlink, other }

    /// Whether every component names a directory (never a symlink) in the topmost layer that has it.
    public static func isDirectory(_ components: [String], in layers: [String]) -> Bool {
        components.indices.allSatisfy { kind(in: layers, Array(components[...$0])) == .directory }
    }

    /// What `components` names in the topmost layer that has it (never following a symlink; a
    /// whiteout counts as missing).
    public static func kind(in layers: [String], _ components: [String]) -> Kind {
        let relative = components.joined(separator: "/")
        for layer in layers {
            var st = stat()
            guard lstat(relative.isEmpty ? layer : "\(layer)/\(relative)", &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: return .directory
            case S_IFLNK: return .symlink
            case S_IFCHR where st.st_rdev == 0: return .missing
            default: return .other
            }
        }
        return .missing
    }
}
