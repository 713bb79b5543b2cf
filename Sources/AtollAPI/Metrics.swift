import AtollCore
import AtollRuntime
import AtollStore
import Foundation
import Hummingbird
import Synchronization

/// Request counts and latency histograms of the daemon, per organization (each key sees its
/// own), route (the route's pattern, so ids in paths do not make a series each), method and status.
public final class RequestMetrics: Sendable {
    /// Histogram bucket bounds in seconds.
    static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    struct Histogram {
        var counts = [UInt64](repeating: 0, count: RequestMetrics.buckets.count)
        var count: UInt64 = 0
        var sum: Double = 0
    }

    struct State {
        var requests: [String: [String: UInt64]] = [:]  // organization → "route\u{0}method\u{0}status"
        var latency: [String: [String: Histogram]] = [:]  // organization → "route\u{0}method"
    }

    let state = Mutex(State())

    public init() {}

    /// Records a request; `organization` is "" for one without a valid key.
    func record(organization: String, route: String, method: String, status: Int, seconds: Double) {
        state.withLock { s in
            s.requests[organization, default: [:]]["\(route)\u{0}\(method)\u{0}\(status)", default: 0] += 1
            var histogram = s.latency[organization]?["\(route)\u{0}\(method)"] ?? Histogram()
            for (index, bound) in Self.buckets.enumerated() where seconds <= bound { histogram.counts[index] += 1 }
            histogram.count += 1
            histogram.sum += seconds
            s.latency[organization, default: [:]]["\(route)\u{0}\(method)"] = histogram
        }
    }

    /// The organization's request series in Prometheus text format.
    func render(into text: inout String, organization: String) {
        let snapshot = state.withLock { (requests: $0.requests[organization] ?? [:], latency: $0.latency[organization] ?? [:]) }
        text += "# HELP atoll_http_requests_total HTTP requests served, by route, method and status.\n"
        text += "# TYPE atoll_http_requests_total counter\n"
        for key in snapshot.requests.keys.sorted() {
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
            text +=
                "atoll_http_requests_total{route=\(Prometheus.quote(parts[0])),method=\(Prometheus.quote(parts[1])),status=\(Prometheus.quote(parts[2]))} \(snapshot.requests[key]!)\n"
        }
        text += "# HELP atoll_http_request_duration_seconds Time to answer HTTP requests, by route and method.\n"
        text += "# TYPE atoll_http_request_duration_seconds histogram\n"
        for key in snapshot.latency.keys.sorted() {
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
            let labels = "route=\(Prometheus.quote(parts[0])),method=\(Prometheus.quote(parts[1]))"
            let histogram = snapshot.latency[key]!
            for (index, bound) in Self.buckets.enumerated() {
                text += "atoll_http_request_duration_seconds_bucket{\(labels),le=\"\(Prometheus.number(bound))\"} \(histogram.counts[index])\n"
            }
            text += "atoll_http_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(histogram.count)\n"
            text += "atoll_http_request_duration_seconds_sum{\(labels)} \(Prometheus.number(histogram.sum))\n"
            text += "atoll_http_request_duration_seconds_count{\(labels)} \(histogram.count)\n"
        }
    }
}

/// Prometheus text exposition format 0.0.4.
enum Prometheus {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A label value in quotes, with backslash, quote and newline escaped.
    static func quote(_ value: String) -> String {
        var out = "\""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// The caller's organization's series: its sandboxes (state, CPU, memory, disk, OOM kills),
    /// sandbox counts per state and its requests; for an administrator's key also the host's
    /// warm pools and the meter.
    static func render(manager: SandboxManager, requests: RequestMetrics, organizationId: String, admin: Bool) async throws -> String {
        let sandboxes = try await manager.list(organizationId: organizationId)
        let meters = Dictionary(try await manager.meters(organizationId: organizationId).map { ($0.sandboxId, $0) }, uniquingKeysWith: { a, _ in a })
        var text = ""
        text += "# HELP atoll_sandbox_state The sandbox's state (1 for the current one).\n# TYPE atoll_sandbox_state gauge\n"
        for s in sandboxes {
            text += "atoll_sandbox_state{sandbox_id=\(quote(s.id.rawValue)),name=\(quote(s.name)),state=\(quote(s.state.rawValue))} 1\n"
        }
        let series: [(String, String, String, (MeterRow) -> String)] = [
            ("atoll_sandbox_cpu_seconds_total", "counter", "CPU time the sandbox used while metered.", { number(Double($0.cpuNanosecondsTotal) / 1e9) }),
            ("atoll_sandbox_memory_bytes", "gauge", "Memory the sandbox uses (last sample).", { "\($0.memoryBytes)" }),
            ("atoll_sandbox_disk_bytes", "gauge", "Bytes the sandbox's disk occupies on the host (last sample).", { "\($0.diskBytes)" }),
            ("atoll_sandbox_oom_kills_total", "counter", "Processes of the sandbox killed for running out of memory.", { "\($0.oomKillsTotal)" }),
        ]
        for (name, type, help, value) in series {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in sandboxes {
                guard let meter = meters[s.id.rawValue] else { continue }
                text += "\(name){sandbox_id=\(quote(s.id.rawValue))} \(value(meter))\n"
            }
        }
        text += "# HELP atoll_sandboxes Sandboxes per state.\n# TYPE atoll_sandboxes gauge\n"
        let states: [SandboxState] = [
            .creating, .starting, .started, .stopping, .stopped, .archiving, .archived, .restoring, .resizing,
            .error, .buildFailed, .pendingBuild, .destroying,
        ]
        for state in states {
            text += "atoll_sandboxes{state=\(quote(state.rawValue))} \(sandboxes.filter { $0.state == state }.count)\n"
        }
        if admin { try await renderHost(manager: manager, into: &text) }
        requests.render(into: &text, organization: organizationId)
        return text
    }

    /// What belongs to the host: the warm pools and the meter.
    static func renderHost(manager: SandboxManager, into text: inout String) async throws {
        let pools = try await manager.warmPoolStatus()
        text += "# HELP atoll_warm_pool_ready Warm pool members started and ready to be claimed, per key.\n# TYPE atoll_warm_pool_ready gauge\n"
        for pool in pools { text += "atoll_warm_pool_ready{key=\(quote(pool.key.description))} \(pool.ready)\n" }
        text += "# HELP atoll_warm_pool_size Configured warm pool size, per key.\n# TYPE atoll_warm_pool_size gauge\n"
        for pool in pools { text += "atoll_warm_pool_size{key=\(quote(pool.key.description))} \(pool.size)\n" }
        text += "# HELP atoll_warm_pool_claims_total Creates served from the warm pool.\n# TYPE atoll_warm_pool_claims_total counter\n"
        for pool in pools { text += "atoll_warm_pool_claims_total{key=\(quote(pool.key.description))} \(pool.claims)\n" }
        text += "# HELP atoll_warm_pool_misses_total Matching creates built cold because the pool was empty.\n# TYPE atoll_warm_pool_misses_total counter\n"
        for pool in pools { text += "atoll_warm_pool_misses_total{key=\(quote(pool.key.description))} \(pool.misses)\n" }
        text += "# HELP atoll_meter_failed_rounds_total Meter rounds that could not be recorded.\n# TYPE atoll_meter_failed_rounds_total counter\n"
        text += "atoll_meter_failed_rounds_total \(await manager.meterFailures)\n"
    }
}
