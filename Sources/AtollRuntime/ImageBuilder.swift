import AtollCore
import AtollImage
import AtollLinux
import Foundation

/// Builds a Dockerfile into layers and a config. Each stage starts from its base (an image,
/// pulled as needed, or an earlier stage); config instructions (ENV, WORKDIR, USER, LABEL,
/// ENTRYPOINT, CMD, EXPOSE, ARG, SHELL, …) change the config; RUN runs in a build sandbox (the
/// isolation, resources and network policy of any sandbox) whose changes become a layer;
/// COPY --from copies files of an earlier stage into a layer. Every layer-making step is cached
/// by its parent layers, the instruction and what it depends on, so a rebuild is instant.
struct ImageBuilder {
    let images: ImageStore
    let puller: ImagePuller
    let log: BuildLog
    let steps: (any BuildSteps)?
    let resources: Resources

    struct Stage {
        var layers: [String]
        var config: ImageConfiguration
    }

    func build(_ dockerfile: Dockerfile) async throws -> BuildResult {
        var built: [String: Stage] = [:]
        var last: Stage?
        for (number, stage) in dockerfile.stages.enumerated() {
            log.write("stage \(number + 1)/\(dockerfile.stages.count): FROM \(stage.base)\(stage.alias.map { " AS \($0)" } ?? "")")
            var current = try await base(stage.base, built: built)
            var args: [String: String] = [:]
            for instruction in stage.instructions {
                log.write("step line \(instruction.line): \(instruction.keyword) \(instruction.arguments.prefix(200))")
                do {
                    switch instruction.keyword {
                    case "RUN": try await run(instruction, on: &current, args: args)
                    case "COPY", "ADD": try copy(instruction, to: &current, built: built)
                    default: try apply(instruction, to: &current, args: &args)
                    }
                } catch let error as AtollError where !error.message.hasPrefix("Dockerfile line") {
                    throw failure(instruction, error.message)
                }
            }
            if let alias = stage.alias { built[alias] = current }
            built[String(number)] = current
            last = current
        }
        guard let last else { throw AtollError(.invalidArgument, "the Dockerfile has no stage") }
        return BuildResult(layers: last.layers, config: last.config)
    }

    func base(_ name: String, built: [String: Stage]) async throws -> Stage {
        if let stage = built[name.lowercased()] { return stage }
        if name == "scratch" { throw AtollError(.invalidArgument, "FROM scratch: a snapshot needs at least one layer") }
        let reference = try ImageReference(name)
        let puller = self.puller
        let log = self.log
        let image = try await Blocking.run("atoll-pull") { try puller.pull(reference) { log.write($0) } }
        return Stage(layers: try image.layers.reversed().map { try images.layerRoot($0.diffID) }, config: image.config)
    }

    func apply(_ instruction: Dockerfile.Instruction, to stage: inout Stage, args: inout [String: String]) throws {
        var values = stage.config.environment
        values.merge(args) { env, _ in env }
        let text = Dockerfile.substitute(instruction.arguments, values)
        let line = instruction.line
        switch instruction.keyword {
        case "ENV":
            var env = stage.config.environment
            for (key, value) in try Dockerfile.pairs(text, line: line, keyword: "ENV") { env[key] = value }
            stage.config.env = env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        case "ARG":
            for word in try Dockerfile.shellWords(text, line: line) {
                if let equals = word.firstIndex(of: "=") {
                    args[String(word[..<equals])] = String(word[word.index(after: equals)...])
                } else {
                    args[word] = args[word] ?? ""
                }
            }
        case "WORKDIR":
            let words = try Dockerfile.shellWords(text, line: line)
            guard words.count == 1, let directory = words.first else { throw failure(instruction, "WORKDIR takes one path") }
            let absolute = directory.hasPrefix("/") ? directory : "\(stage.config.workingDir ?? "/")/\(directory)"
            stage.config.workingDir = absolute
            // Docker makes the directory at once (a layer), so later steps and sandboxes have it.
            let components = try LayerPath(String(absolute.drop { $0 == "/" }), entry: absolute).components
            if !components.isEmpty && !KernelFileTree.isDirectory(components, in: stage.layers) {
                stage.layers.insert(try images.layerRoot(try images.makeDirectoryLayer(absolute)), at: 0)
            }
        case "USER":
            let user = text.trimmingCharacters(in: .whitespaces)
            guard !user.isEmpty, !user.contains(where: \.isWhitespace) else { throw failure(instruction, "USER takes one user[:group]") }
            stage.config.user = user
        case "LABEL":
            for (key, value) in try Dockerfile.pairs(text, line: line, keyword: "LABEL") { stage.config.labels[key] = value }
        case "ENTRYPOINT":
            stage.config.entrypoint = instruction.jsonArray ?? ["/bin/sh", "-c", text]
            stage.config.cmd = nil
        case "CMD":
            stage.config.cmd = instruction.jsonArray ?? ["/bin/sh", "-c", text]
        case "SHELL":
            guard let shell = instruction.jsonArray, !shell.isEmpty else { throw failure(instruction, "SHELL takes a JSON array") }
            stage.config.shell = shell
        case "EXPOSE":
            for port in try Dockerfile.shellWords(text, line: line) {
                stage.config.exposedPorts.append(port.contains("/") ? port : "\(port)/tcp")
            }
        case "STOPSIGNAL", "VOLUME", "HEALTHCHECK", "MAINTAINER", "ONBUILD":
            break  // recorded by Docker in the config; nothing a sandbox acts on
        default:
            throw failure(instruction, "\(instruction.keyword) is not a config instruction")
        }
    }

    /// RUN: the command in a build sandbox on the stage's layers; its changes are the new top layer.
    func run(_ instruction: Dockerfile.Instruction, on stage: inout Stage, args: [String: String]) async throws {
        let (flags, rest) = instruction.flags()
        if let flag = flags.keys.first { throw failure(instruction, "RUN --\(flag) is not supported") }
        let command: [String]
        if let argv = Dockerfile.Instruction(keyword: "RUN", arguments: rest, line: instruction.line).jsonArray {
            guard !argv.isEmpty else { throw failure(instruction, "RUN [] has no command") }
            command = argv
        } else {
            command = (stage.config.shell ?? ["/bin/sh", "-c"]) + [rest]
        }
        var config = stage.config
        // ARG values are in the step's environment (not in the image's).
        var env = config.environment
        for (key, value) in args where env[key] == nil { env[key] = value }
        config.env = env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let key = cacheKey(stage, ["RUN"] + command + config.env + [config.user ?? "", config.workingDir ?? ""])
        if let cached = images.cachedLayer(key) {
            log.write("  CACHED \(cached.prefix(19))")
            stage.layers.insert(try images.layerRoot(cached), at: 0)
            return
        }
        guard let steps else { throw failure(instruction, "no build sandbox runner is available") }
        let diffID = try await steps.runBuildStep(command, layers: stage.layers, config: config, resources: resources, log: log)
        try images.rememberLayer(key, diffID: diffID)
        stage.layers.insert(try images.layerRoot(diffID), at: 0)
    }

    /// COPY --from=STAGE SRC... DEST (with --chown=UID:GID and --chmod=OCTAL). Files from the
    /// build context need object storage for the context upload, which Atoll does not have yet.
    func copy(_ instruction: Dockerfile.Instruction, to stage: inout Stage, built: [String: Stage]) throws {
        let (flags, rest) = instruction.flags()
        guard instruction.keyword == "COPY", let from = flags["from"] else {
            throw failure(
                instruction, "\(instruction.keyword) from the build context is not supported yet (a context needs object storage); COPY --from=STAGE works")
        }
        for flag in flags.keys where !["from", "chown", "chmod", "link"].contains(flag) {
            throw failure(instruction, "COPY --\(flag) is not supported")
        }
        let words =
            try Dockerfile.Instruction(keyword: "COPY", arguments: rest, line: instruction.line).jsonArray
            ?? Dockerfile.shellWords(rest, line: instruction.line)
        guard words.count >= 2, let destination = words.last else { throw failure(instruction, "COPY needs a source and a destination") }
        let sources = Array(words.dropLast())
        guard sources.allSatisfy({ !$0.contains("*") && !$0.contains("?") && !$0.contains("[") }) else {
            throw failure(instruction, "COPY source patterns (*, ?, [) are not supported; name the files")
        }
        let source: Stage
        if let stage = built[from.lowercased()] {
            source = stage
        } else {
            throw failure(instruction, "COPY --from=\(from): no earlier stage has that name (images as sources are not supported)")
        }
        var owner: (uid: Int, gid: Int)?
        if let chown = flags["chown"] {
            let parts = chown.split(separator: ":").map { Int($0) }
            guard let uid = parts.first ?? nil, parts.count <= 2, parts.allSatisfy({ $0 != nil }) else {
                throw failure(instruction, "--chown takes numeric UID[:GID] (names are not looked up)")
            }
            owner = (uid, parts.count == 2 ? parts[1]! : uid)
        }
        var mode: Int?
        if let chmod = flags["chmod"] {
            guard let value = Int(chmod, radix: 8), (0...0o7777).contains(value) else { throw failure(instruction, "--chmod takes an octal mode") }
            mode = value
        }
        let into = sources.count > 1 ? (destination.hasSuffix("/") ? destination : destination + "/") : destination
        let absolute = into.hasPrefix("/") ? into : "\(stage.config.workingDir ?? "/")/\(into)"
        for path in sources {
            let key = cacheKey(stage, ["COPY", from] + source.layers + [path, absolute, flags["chown"] ?? "", flags["chmod"] ?? ""])
            if let cached = images.cachedLayer(key) {
                log.write("  CACHED \(cached.prefix(19))")
                stage.layers.insert(try images.layerRoot(cached), at: 0)
                continue
            }
            let made = try LayerCopy.copy(
                LayerCopy.Request(
                    layers: source.layers, source: path.hasPrefix("/") ? path : "/\(path)", destination: absolute, owner: owner, mode: mode),
                store: images)
            log.write("  layer \(made.diffID.prefix(19)): \(made.report.entries) entries")
            try images.rememberLayer(key, diffID: made.diffID)
            stage.layers.insert(try images.layerRoot(made.diffID), at: 0)
        }
    }

    /// A build step's cache key: its parent layers and everything the step depends on.
    func cacheKey(_ stage: Stage, _ parts: [String]) -> String {
        let text = (stage.layers + ["--"] + parts).joined(separator: "\u{0}")
        return Hex.string(ImageDigest.sha256(Array(text.utf8)))
    }

    func failure(_ instruction: Dockerfile.Instruction, _ why: String) -> AtollError {
        AtollError(.invalidArgument, "Dockerfile line \(instruction.line) (\(instruction.keyword)): \(why)")
    }
}
