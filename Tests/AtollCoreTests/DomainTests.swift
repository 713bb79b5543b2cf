import AtollCore
import Testing

@Suite("domain: resources, ids, languages, environment, states")
struct DomainTests {
    @Test("Daytona's default resources and per-sandbox maximums")
    func defaults() throws {
        #expect(Resources.defaults == Resources(cpu: 1, memoryGiB: 1, diskGiB: 3))
        #expect(ResourceLimits.defaults == ResourceLimits(maxCPU: 4, maxMemoryGiB: 8, maxDiskGiB: 10))
        try ResourceLimits.defaults.validate(.defaults)
        try ResourceLimits.defaults.validate(Resources(cpu: 4, memoryGiB: 8, diskGiB: 10))
    }

    @Test(
        "an out-of-range resource names the field, the value and the limit",
        arguments: [
            (Resources(cpu: 0, memoryGiB: 1, diskGiB: 3), "cpu must be at least 1 vCPUs, got 0"),
            (Resources(cpu: 5, memoryGiB: 1, diskGiB: 3), "cpu 5 exceeds the per-sandbox maximum of 4 vCPUs"),
            (Resources(cpu: 1, memoryGiB: 9, diskGiB: 3), "memory 9 exceeds the per-sandbox maximum of 8 GiB"),
            (Resources(cpu: 1, memoryGiB: 1, diskGiB: 11), "disk 11 exceeds the per-sandbox maximum of 10 GiB"),
            (Resources(cpu: 1, memoryGiB: -1, diskGiB: 3), "memory must be at least 1 GiB, got -1"),
        ])
    func outOfRange(resources: Resources, message: String) {
        #expect(throws: AtollError(.invalidArgument, message)) { try ResourceLimits.defaults.validate(resources) }
    }

    @Test("operator-configured maximums apply")
    func configuredLimits() throws {
        let limits = ResourceLimits(maxCPU: 16, maxMemoryGiB: 64, maxDiskGiB: 100)
        try limits.validate(Resources(cpu: 16, memoryGiB: 64, diskGiB: 100))
        #expect(throws: AtollError.self) { try limits.validate(Resources(cpu: 17, memoryGiB: 1, diskGiB: 1)) }
    }

    @Test(
        "sandbox ids are DNS labels: no path tricks, no upper case",
        arguments: [
            ("a", true), ("sandbox-1", true), ("0abc", true), (String(repeating: "a", count: 63), true),
            ("", false), ("-a", false), ("A", false), ("a/b", false), ("..", false), ("a.b", false), ("a b", false),
            (String(repeating: "a", count: 64), false), ("é", false),
        ])
    func ids(value: String, valid: Bool) {
        #expect(SandboxID.isValid(value) == valid)
        #expect(((try? SandboxID(value)) != nil) == valid)
    }

    @Test("random ids are valid, unique UUIDs")
    func randomIDs() {
        let ids = (0..<500).map { _ in SandboxID.random() }
        #expect(Set(ids).count == 500)
        for id in ids.prefix(20) {
            #expect(id.rawValue.count == 36)
            #expect(id.rawValue.split(separator: "-").map(\.count) == [8, 4, 4, 4, 12])
        }
    }

    @Test("languages: names, file extensions, default")
    func languages() throws {
        #expect(Language.default == .python)
        #expect(try Language(parsing: "TypeScript") == .typescript)
        #expect(throws: AtollError(.invalidArgument, "unknown language \"ruby\": expected one of python, typescript, javascript")) {
            try Language(parsing: "ruby")
        }
        #expect(Language.forFileName("a.py") == .python)
        #expect(Language.forFileName("dir/b.mts") == .typescript)
        #expect(Language.forFileName("c.cjs") == .javascript)
        #expect(Language.forFileName("README") == nil)
        #expect(Language.forFileName(".py") == nil)
        #expect(Language.labelKey == "code-toolbox-language")
    }

    @Test("environment keys follow the toolbox's rule; values may not hold NUL")
    func environment() throws {
        try EnvironmentValidation.validate(["A": "1", "_x9": "", "PATH": "/bin"])
        #expect(throws: AtollError.self) { try EnvironmentValidation.validate(["1A": "x"]) }
        #expect(throws: AtollError.self) { try EnvironmentValidation.validate(["A-B": "x"]) }
        #expect(throws: AtollError.self) { try EnvironmentValidation.validate(["": "x"]) }
        #expect(throws: AtollError.self) { try EnvironmentValidation.validate(["A": "x\0y"]) }
    }

    @Test("states have Daytona's wire names and one transition table")
    func states() {
        #expect(SandboxState.buildFailed.rawValue == "build_failed")
        #expect(SandboxState.pendingBuild.rawValue == "pending_build")
        #expect(SandboxState.started.canTransition(to: .stopping))
        #expect(!SandboxState.stopped.canTransition(to: .started), "a start goes through starting")
        #expect(SandboxState.stopped.canTransition(to: .archiving))
        #expect(SandboxState.archiving.canTransition(to: .starting), "stop, archive, start: start may interrupt an archive")
        #expect(SandboxState.destroyed.successors.isEmpty)
        for state in SandboxState.allCases where state != .destroyed {
            #expect(!state.successors.isEmpty, "\(state) is a dead end")
        }
        #expect(SandboxState.allCases.filter(\.isTransitional).count == 10)
        #expect(SandboxState.started.canTransition(to: .pausing) && SandboxState.paused.canTransition(to: .resuming))
        #expect(!SandboxState.paused.canTransition(to: .archiving), "a paused sandbox holds memory: stop it first")
    }
}
