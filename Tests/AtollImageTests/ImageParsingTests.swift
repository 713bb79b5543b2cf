import AtollCore
import AtollImage
import Foundation
import Testing

@Suite("image references")
struct ImageReferenceTests {
    @Test(
        "Docker's defaults: Docker Hub, library/, latest",
        arguments: [
            ("python:3.12", "docker.io/library/python:3.12"),
            ("python", "docker.io/library/python:latest"),
            ("daytonaio/sandbox:0.5.0", "docker.io/daytonaio/sandbox:0.5.0"),
            ("127.0.0.1:5000/atoll-test/multi:1", "127.0.0.1:5000/atoll-test/multi:1"),
            ("localhost/x", "localhost/x:latest"),
            ("index.docker.io/library/debian:12", "docker.io/library/debian:12"),
            ("ghcr.io/a/b@sha256:" + String(repeating: "a", count: 64), "ghcr.io/a/b@sha256:" + String(repeating: "a", count: 64)),
        ])
    func canonical(text: String, expected: String) throws {
        #expect(try ImageReference(text).description == expected)
    }

    @Test("bad references are refused with the reason", arguments: ["", "UPPER/case", "a/../b", "x:bad tag", "x@sha256:12", "-rf", "a//b"])
    func refused(text: String) {
        #expect(throws: AtollError.self) { try ImageReference(text) }
    }
}

@Suite("Dockerfile parsing")
struct DockerfileTests {
    @Test("the SDK's generated Dockerfile: stages, continuations, comments, JSON and shell forms")
    func sdkDockerfile() throws {
        let text = """
            # syntax=docker/dockerfile:1
            ARG BASE=python:3.12-slim
            FROM ${BASE} AS build
            RUN python -m pip install numpy \\
                pandas
            RUN "bash" "-c" "ls"
            ENV MY_VAR='hello world' OTHER=1
            WORKDIR '/w d'
            ENTRYPOINT ["sleep", "infinity"]
            FROM build
            COPY --from=build --chown=1000:1000 /app /app
            """
        let file = try Dockerfile(parsing: text)
        #expect(file.stages.count == 2)
        #expect(file.stages[0].base == "python:3.12-slim" && file.stages[0].alias == "build")
        #expect(file.stages[0].instructions.map(\.keyword) == ["RUN", "RUN", "ENV", "WORKDIR", "ENTRYPOINT"])
        #expect(file.stages[0].instructions[0].arguments == "python -m pip install numpy      pandas")
        #expect(file.stages[0].instructions[4].jsonArray == ["sleep", "infinity"])
        let pairs = try Dockerfile.pairs(file.stages[0].instructions[2].arguments, line: 6, keyword: "ENV")
        #expect(pairs.map { "\($0.0)=\($0.1)" } == ["MY_VAR=hello world", "OTHER=1"])
        #expect(try Dockerfile.shellWords(file.stages[0].instructions[3].arguments, line: 7) == ["/w d"])
        let (flags, rest) = file.stages[1].instructions[0].flags()
        #expect(flags == ["from": "build", "chown": "1000:1000"] && rest == "/app /app")
    }

    @Test("legacy ENV, substitution with defaults, escaped dollars")
    func substitution() throws {
        #expect(try Dockerfile.pairs("PATH /usr/local/bin:/usr/bin", line: 1, keyword: "ENV").map(\.1) == ["/usr/local/bin:/usr/bin"])
        #expect(Dockerfile.substitute("${A}/$B-${C:-dflt}-\\$D", ["A": "a", "B": "b"]) == "a/b-dflt-$D")
    }

    @Test("errors name the line", arguments: ["RUN echo before FROM", "FROM a b c d", "FROM x\nFROOM y", "", "FROM x\nRUN echo 'open"])
    func errors(text: String) throws {
        do {
            let file = try Dockerfile(parsing: text)
            for instruction in file.stages.flatMap(\.instructions) { _ = try Dockerfile.shellWords(instruction.arguments, line: instruction.line) }
            Issue.record("no error for \(text)")
        } catch let error as AtollError {
            #expect(error.message.contains("line") || error.message.contains("FROM"), "\(error.message)")
        }
    }
}

@Suite("registry settings")
struct RegistrySettingsTests {
    @Test("mirrors of Docker Hub and plain-HTTP registries become registries.conf")
    func registriesConf() throws {
        let conf = try RegistrySettings(mirrors: ["http://127.0.0.1:5000/", "https://mirror.example"], insecureRegistries: ["10.0.0.2:5000"])
            .registriesConf()
        #expect(conf.contains("location = \"10.0.0.2:5000\"\ninsecure = true"))
        #expect(conf.contains("prefix = \"docker.io\""))
        #expect(conf.contains("location = \"127.0.0.1:5000\"\ninsecure = true"))
        #expect(conf.contains("location = \"mirror.example\"\ninsecure = false"))
        #expect(throws: AtollError.self) { try RegistrySettings(insecureRegistries: ["bad\"host"]).registriesConf() }
    }
}
