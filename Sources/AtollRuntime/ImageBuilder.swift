import AtollCore
import AtollImage
import AtollLinux
import Foundation

/// Builds a Dockerfile into layers and a config. Each stage starts from its base (an image,
/// pulled as needed, or an earlier stage); the instructions that only change the config (ENV,
/// WORKDIR, USER, LABEL, ENTRYPOINT, CMD, EXPOSE, ARG, SHELL, STOPSIGNAL, VOLUME, HEALTHCHECK,
/// MAINTAINER) are applied to it. Instructions that change the filesystem (RUN, COPY, ADD) are
/// refused with the instruction named: Atoll's builder does not run them yet.
struct ImageBuilder {
    let images: ImageStore
    let puller: ImagePuller
    let log: BuildLog

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
                try apply(instruction, to: &current, args: &args)
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
            stage.config.workingDir = directory.hasPrefix("/") ? directory : "\(stage.config.workingDir ?? "/")/\(directory)"
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
            throw failure(instruction, "\(instruction.keyword) changes the filesystem, and Atoll's builder does not run RUN, COPY or ADD yet")
        }
    }

    func failure(_ instruction: Dockerfile.Instruction, _ why: String) -> AtollError {
        AtollError(.invalidArgument, "Dockerfile line \(instruction.line) (\(instruction.keyword)): \(why)")
    }
}
