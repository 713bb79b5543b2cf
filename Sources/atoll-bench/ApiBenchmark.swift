import AtollCore
import CRuntime
import Foundation
import Glibc

/// Atoll through its HTTP API against runc, crun, bubblewrap, unshare and plain python3, in one
/// run, interleaved round by round (see docs in `scripts/bench` and performance targets in the
/// README). The daemon is started by `scripts/bench`; this measures it.
struct ApiBenchmark {
    var http: BenchHTTP
    var daemonPid: Int32
    /// A busybox root for the peers and OCI bundles made from it.
    var rootfs: String
    var scratch: String
    var rounds: Int
    var density: Int
    var loadSeconds: Double

    struct Peers {
        var unshare: String
        var bwrap: String
        var runc: String
        var crun: String
        var python: String
    }

    /// One figure: Atoll's samples, the peer's, and the target ratio (Atoll ≤ target × peer).
    struct Comparison {
        var figure: String
        var atoll: Measurement
        var peer: Measurement
        var target: Double
        var ratio: Double { atoll.median / peer.median }
    }

    struct Report {
        var comparisons: [Comparison]
        var floors: [Measurement]
        var densityAtollKiB: Double
        var densityCrunKiB: Double
        var teardownAtoll: Double
        var teardownCrun: Double
        var rssIdleMiB: Double
        var rssWithSandboxesMiB: Double
        var rssLoadStartMiB: Double
        var rssLoadEndMiB: Double
        var rssLoadMaxMiB: Double
        var loadRequests: Int
    }

    // MARK: - Peers

    func locate(_ name: String) throws -> String {
        for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        throw AtollError(.notFound, "\(name) is not installed (scripts/bench installs the peers: runc crun bubblewrap busybox-static)")
    }

    /// An OCI bundle for `runtime` running `args` on the busybox root, in a cgroup of the
    /// benchmark's own (`cgroupsPath` absolute, as performance.md prescribes for runc).
    func bundle(_ name: String, runc: String, args: [String]) throws -> String {
        let dir = "\(scratch)/bundle-\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: "\(dir)/config.json")
        try Spawn.run(runc, ["spec", "--bundle", dir])
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/config.json"))
        guard var spec = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            var process = spec["process"] as? [String: Any], var root = spec["root"] as? [String: Any],
            var linux = spec["linux"] as? [String: Any]
        else {
            throw AtollError(.system, "runc spec wrote an unexpected config.json")
        }
        process["args"] = args
        process["terminal"] = false
        root["path"] = rootfs
        root["readonly"] = true
        linux["cgroupsPath"] = "/atoll-bench-peers/\(name)"
        spec["process"] = process
        spec["root"] = root
        spec["linux"] = linux
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: "\(dir)/config.json"))
        return dir
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    // MARK: - Atoll through the API

    func createSandbox(_ body: String) throws -> String {
        let sandbox = try http.json("POST", "/api/sandbox", body)
        guard let id = sandbox["id"] as? String, sandbox["state"] as? String == "started" else {
            throw AtollError(.system, "create answered \(sandbox)")
        }
        return id
    }

    func waitForPool() throws {
        for _ in 0..<6000 {
            let pools = try http.json("GET", "/api/warm-pool")["items"] as? [[String: Any]] ?? []
            if pools.allSatisfy({ ($0["ready"] as? Int ?? 0) >= ($0["size"] as? Int ?? 0) }) { return }
            usleep(10_000)
        }
        throw AtollError(.timeout, "the warm pool did not fill within 60 s")
    }

    func rssMiB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(daemonPid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return .nan }
        return kib / 1024
    }

    /// MemAvailable once it has stopped moving (less than 1 MiB in a second; at most 20 s).
    static func settledMemAvailableKiB() -> Double {
        var last = memAvailableKiB()
        for _ in 0..<20 {
            sleep(1)
            let now = memAvailableKiB()
            if abs(now - last) < 1024 { return now }
            last = now
        }
        return last
    }

    static func memAvailableKiB() -> Double {
        guard let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") })
        else { return .nan }
        return Double(line.split(separator: " ").dropFirst().first ?? "") ?? .nan
    }

    // MARK: - Run

    func run(progress: (String) -> Void) throws -> Report {
        let peers = Peers(
            unshare: try locate("unshare"), bwrap: try locate("bwrap"), runc: try locate("runc"), crun: try locate("crun"),
            python: try locate("python3"))
        let runcBundle = try bundle("runc", runc: peers.runc, args: ["/bin/true"])
        let crunBundle = try bundle("crun", runc: peers.runc, args: ["/bin/true"])
        let sleepBundle = try bundle("crun-sleep", runc: peers.runc, args: ["/bin/sleep", "3600"])
        try waitForPool()
        let rssIdle = rssMiB()

        // A long-lived sandbox for exec and code-run.
        let resident = try createSandbox(#"{"labels":{"atoll-bench":"resident"},"memory":2}"#)
        var samples: [String: [Double]] = [:]
        func sample(_ name: String, _ body: () throws -> Void) throws { samples[name, default: []].append(try Self.time(body)) }
        var unique = 0
        progress("\(rounds) rounds, interleaved")
        for round in 0..<rounds {
            unique += 1
            try sample("true") { try Spawn.run("/bin/true", []) }
            try sample("unshare") { try Spawn.run(peers.unshare, ["--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--mount-proc", "true"]) }
            try sample("bwrap") { try Spawn.run(peers.bwrap, ["--unshare-all", "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]) }
            try sample("runc") { try Spawn.run(peers.runc, ["run", "--bundle", runcBundle, "atoll-bench-runc-\(getpid())-\(unique)"]) }
            try sample("crun") { try Spawn.run(peers.crun, ["run", "--bundle", crunBundle, "atoll-bench-crun-\(getpid())-\(unique)"]) }
            try sample("python3") { try Spawn.run(peers.python, ["-c", "print(1)"]) }

            // Cold: resources no pool serves (2 GiB memory), so the whole build is measured.
            var cold = ""
            try sample("cold create") { cold = try createSandbox(#"{"labels":{"atoll-bench":"cold"},"memory":2}"#) }
            try waitForPool()
            var warm = ""
            try sample("warm create") { warm = try createSandbox(#"{"labels":{"atoll-bench":"warm"}}"#) }
            try sample("exec true") {
                let result = try http.json("POST", "/toolbox/\(resident)/process/execute", #"{"command":"true"}"#)
                guard result["exitCode"] as? Int == 0 else { throw AtollError(.system, "exec true answered \(result)") }
            }
            try sample("code-run print(1)") {
                let result = try http.json("POST", "/toolbox/\(resident)/process/code-run", #"{"code":"print(1)"}"#)
                guard (result["result"] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines) == "1" else {
                    throw AtollError(.system, "code-run answered \(result)")
                }
            }
            try sample("stop") { _ = try http.json("POST", "/api/sandbox/\(cold)/stop") }
            try sample("start") { _ = try http.json("POST", "/api/sandbox/\(cold)/start") }
            try sample("delete") { _ = try http.json("DELETE", "/api/sandbox/\(cold)") }
            _ = try http.json("DELETE", "/api/sandbox/\(warm)")
            if round % 10 == 9 { progress("round \(round + 1)/\(rounds)") }
        }
        func m(_ name: String) -> Measurement { Measurement(name: name, samples: samples[name] ?? []) }
        let comparisons = [
            Comparison(figure: "cold create (POST /api/sandbox → started)", atoll: m("cold create"), peer: m("runc"), target: 1.0),
            Comparison(figure: "warm create (from the warm pool)", atoll: m("warm create"), peer: m("bwrap"), target: 1.0),
            Comparison(figure: "exec `true` (toolbox API)", atoll: m("exec true"), peer: m("bwrap"), target: 0.5),
            Comparison(figure: "code-run `print(1)` in Python", atoll: m("code-run print(1)"), peer: m("python3"), target: 1.2),
            Comparison(figure: "stop", atoll: m("stop"), peer: m("runc"), target: 1.0),
            Comparison(figure: "start (stopped → started)", atoll: m("start"), peer: m("runc"), target: 1.0),
            Comparison(figure: "delete a started sandbox", atoll: m("delete"), peer: m("runc"), target: 0.5),
        ]
        let floors = [m("true"), m("unshare"), m("bwrap"), m("crun"), m("runc"), m("python3")]
        _ = try http.json("DELETE", "/api/sandbox/\(resident)")

        // Density: memory per idle started sandbox from MemAvailable, crun first, then Atoll.
        // Each reading waits for MemAvailable to settle: memory freed by the previous phase
        // (namespaces, loop devices, page cache of deleted disks) comes back asynchronously and
        // would otherwise be counted against the next phase.
        progress("density: \(density) crun containers")
        let crunBefore = Self.settledMemAvailableKiB()
        var containers: [String] = []
        defer { for id in containers { _ = try? Spawn.run(peers.crun, ["delete", "--force", id]) } }
        for i in 0..<density {
            let id = "atoll-bench-density-\(getpid())-\(i)"
            try Spawn.run(peers.crun, ["run", "--detach", "--bundle", sleepBundle, id])
            containers.append(id)
            Reaper.reap()
        }
        let densityCrun = (crunBefore - Self.settledMemAvailableKiB()) / Double(density)
        let teardownCrun =
            try Self.time {
                for id in containers { try Spawn.run(peers.crun, ["delete", "--force", id]) }
                containers = []
                Reaper.reap()
            } / 1000

        progress("density: \(density) Atoll sandboxes")
        let before = Self.settledMemAvailableKiB()
        var ids: [String] = []
        for i in 0..<density {
            ids.append(try createSandbox(#"{"labels":{"atoll-bench":"density"},"memory":2}"#))
            if i % 50 == 49 { progress("  \(i + 1) started") }
        }
        let densityAtoll = (before - Self.settledMemAvailableKiB()) / Double(density)
        let rssWith = rssMiB()
        let teardownAtoll = try Self.time { for id in ids { _ = try http.json("DELETE", "/api/sandbox/\(id)") } } / 1000

        // Daemon memory under load: exec requests back to back.
        progress("daemon under load for \(Int(loadSeconds)) s")
        let loaded = try createSandbox(#"{"labels":{"atoll-bench":"load"},"memory":2}"#)
        let loadStart = Date()
        var requests = 0
        var rssStart = Double.nan
        var rssMax = 0.0
        while Date().timeIntervalSince(loadStart) < loadSeconds {
            _ = try http.json("POST", "/toolbox/\(loaded)/process/execute", #"{"command":"true"}"#)
            requests += 1
            if requests % 50 == 0 {
                let rss = rssMiB()
                rssMax = max(rssMax, rss)
                // The first tenth warms caches and pools up; growth is measured from there.
                if rssStart.isNaN && Date().timeIntervalSince(loadStart) >= loadSeconds / 10 { rssStart = rss }
            }
        }
        let rssEnd = rssMiB()
        if rssStart.isNaN { rssStart = rssEnd }  // a load too short to sample after its first tenth
        _ = try http.json("DELETE", "/api/sandbox/\(loaded)")
        return Report(
            comparisons: comparisons, floors: floors, densityAtollKiB: densityAtoll, densityCrunKiB: densityCrun,
            teardownAtoll: teardownAtoll, teardownCrun: teardownCrun, rssIdleMiB: rssIdle, rssWithSandboxesMiB: rssWith,
            rssLoadStartMiB: rssStart, rssLoadEndMiB: rssEnd, rssLoadMaxMiB: max(rssMax, rssEnd), loadRequests: requests)
    }
}

/// Collects orphaned children (detached containers' processes re-parented to the benchmark, a
/// subreaper) so they do not linger as zombies.
enum Reaper {
    static func become() { _ = atoll_set_child_subreaper() }

    static func reap() {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
    }
}

extension ApiBenchmark.Report {
    /// The dated markdown report (`BENCHMARKS.md`).
    func markdown(rounds: Int, density: Int, loadSeconds: Double) -> String {
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        var text = "# Benchmarks\n\n"
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        text += "Measured \(formatter.string(from: Date())) by `scripts/bench` on \(Machine.line()).\n"
        text += "Release build; `atolld` on loopback with a temporary data directory and a network namespace of its own; "
        text += "every figure through the HTTP API on one keep-alive connection; peers run with `posix_spawn` in the same "
        text += "process, interleaved round by round (\(rounds) rounds). Ratios are Atoll's median over the peer's median.\n\n"
        text += "| figure | Atoll p50 ms | Atoll p95 ms | peer | peer p50 ms | peer p95 ms | ratio | target | |\n"
        text += "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        let peerNames = ["runc": "`runc run /bin/true`", "bwrap": "`bwrap --unshare-all /bin/true`", "python3": "plain `python3 -c 'print(1)'`"]
        for c in comparisons {
            let met = c.ratio <= c.target ? "met" : "**missed**"
            text += "| \(c.figure) | \(f(c.atoll.median)) | \(f(c.atoll.p95)) | \(peerNames[c.peer.name] ?? c.peer.name) | "
            text += "\(f(c.peer.median)) | \(f(c.peer.p95)) | \(f(c.ratio)) | ≤ \(f(c.target)) | \(met) |\n"
        }
        // A negative or tiny peer figure is noise (too few sandboxes for MemAvailable to see).
        let densityRatio = densityCrunKiB > 16 ? densityAtollKiB / densityCrunKiB : .nan
        let densityVerdict = densityRatio.isNaN ? "not measured (increase --density)" : densityRatio <= 1.2 ? "met" : "**missed**"
        text += "| density: memory per idle started sandbox (\(density) of them) | \(String(format: "%.0f KiB", densityAtollKiB)) | | crun, `sleep 3600` | "
        text += "\(String(format: "%.0f KiB", densityCrunKiB)) | | \(densityRatio.isNaN ? "-" : f(densityRatio)) | ≤ 1.20 | \(densityVerdict) |\n"
        text += "| daemon RSS, idle | \(String(format: "%.1f MiB", rssIdleMiB)) | | | | | | ≤ 40 MiB | \(rssIdleMiB <= 40 ? "met" : "**missed**") |\n\n"
        text += "Peers in the same run (median / p95 ms): "
        text += floors.map { "\($0.name) \(f($0.median)) / \(f($0.p95))" }.joined(separator: " · ") + ".\n\n"
        text += "Teardown of \(density): Atoll \(String(format: "%.1f", teardownAtoll)) s (API deletes, one at a time), "
        text += "crun \(String(format: "%.1f", teardownCrun)) s. Daemon RSS with \(density) sandboxes: \(String(format: "%.1f", rssWithSandboxesMiB)) MiB.\n\n"
        let growth = (rssLoadEndMiB - rssLoadStartMiB) / Double(max(loadRequests, 1)) * 1000
        text += "Daemon under load (\(loadRequests) exec requests back to back for \(Int(loadSeconds)) s): RSS "
        text += "\(String(format: "%.1f", rssLoadStartMiB)) MiB after the first tenth, \(String(format: "%.1f", rssLoadEndMiB)) MiB at the end, "
        text += "at most \(String(format: "%.1f", rssLoadMaxMiB)) MiB (\(String(format: "%+.3f", growth)) MiB per 1000 requests).\n"
        return text
    }
}

/// The machine line of a report: CPU model, cores, memory, kernel.
enum Machine {
    static func line() -> String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        let memory = ApiBenchmark.memTotalGiB()
        return "\(model), \(ProcessInfo.processInfo.activeProcessorCount) CPUs, \(String(format: "%.0f", memory)) GiB, Linux \(hostRelease())"
    }
}

extension ApiBenchmark {
    static func memTotalGiB() -> Double {
        guard let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return .nan }
        return kib / 1024 / 1024
    }
}
