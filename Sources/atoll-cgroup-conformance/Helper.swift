import AtollLinux
import Glibc

/// What a check starts inside the group under test. Each mode prints one line when it is ready
/// (or done) and then does its job until killed.
enum Helper {
    static func run(_ arguments: [String]) -> Never {
        let mode = arguments.first ?? ""
        let number = arguments.count > 1 ? Int(arguments[1]) ?? 0 : 0
        switch mode {
        case "where":
            // The first thing it does: look where it is.
            let cgroup = (try? KernelFile.read("/proc/self/cgroup")) ?? ""
            let line = cgroup.split(separator: "\n").first { $0.hasPrefix("0::") || $0.contains(":memory:") } ?? ""
            say(String(line))
            pauseForever()
        case "hog":
            say("hogging")
            var x: UInt64 = 1
            while true {
                x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                if x == 0 { say("\(x)") }
            }
        case "alloc":
            // Touches `number` MiB one page at a time; reports how far it got if it survives.
            var touched = 0
            for _ in 0..<number {
                guard let block = malloc(1 << 20) else { break }
                memset(block, 1, 1 << 20)
                touched += 1
            }
            say("survived \(touched) MiB")
            exit(0)
        case "hold":
            for _ in 0..<number {
                guard let block = malloc(1 << 20) else { exit(1) }
                memset(block, 1, 1 << 20)
            }
            say("ready")
            pauseForever()
        case "fork":
            var forked = 0
            var failed = 0
            for _ in 0..<number {
                let pid = fork()
                if pid == 0 { pauseForever() }
                if pid > 0 { forked += 1 } else { failed += 1 }
            }
            say("forked \(forked) failed \(failed)")
            pauseForever()
        case "sleep":
            say("sleeping")
            pauseForever()
        default:
            say("unknown helper mode \(mode)")
            exit(2)
        }
    }

    /// One line to the check, at once (standard output is a pipe, so it would be buffered).
    static func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    static func pauseForever() -> Never {
        while true { pause() }
    }
}
