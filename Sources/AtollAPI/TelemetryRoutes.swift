import AtollCore
import AtollRuntime
import AtollStore
import Foundation
import Hummingbird

/// What the SDK's `get_metrics` reads: `GET /api/config` (Daytona's deployment configuration;
/// Atoll has no separate analytics service, so the SDK comes back here) and
/// `GET /api/sandbox/{id}/telemetry/metrics`, answered from Atoll's per-second meter.
struct TelemetryRoutes {
    let manager: SandboxManager
    let server: ServerSettings

    /// Daytona's metric names, and what each is in Atoll's meter.
    enum Metric: String, CaseIterable {
        case cpuUtilization = "daytona.sandbox.cpu.utilization"
        case cpuLimit = "daytona.sandbox.cpu.limit"
        case memoryUsage = "daytona.sandbox.memory.usage"
        case memoryLimit = "daytona.sandbox.memory.limit"
        case filesystemUsage = "daytona.sandbox.filesystem.usage"
        case filesystemTotal = "daytona.sandbox.filesystem.total"

        func value(_ point: UsagePoint, _ sandbox: Sandbox) -> Double {
            switch self {
            case .cpuUtilization:
                // CPU time in the point's span, as a share of the sandbox's vCPUs (0-100).
                let busy = Double(point.cpuNanoseconds) / 1e9 / Double(max(1, point.seconds))
                return (min(100, busy / Double(sandbox.resources.cpu) * 100) * 10).rounded() / 10
            case .cpuLimit: return Double(sandbox.resources.cpu)
            case .memoryUsage: return Double(point.memoryBytes)
            case .memoryLimit: return Double(sandbox.resources.memoryGiB) * 1_073_741_824
            case .filesystemUsage: return Double(point.diskBytes)
            case .filesystemTotal: return Double(sandbox.resources.diskGiB) * 1_073_741_824
            }
        }
    }

    struct DataPoint: Encodable {
        var timestamp: String
        var value: Double
    }

    struct Series: Encodable {
        var metricName: String
        var dataPoints: [DataPoint]
    }

    /// Daytona metrics Atoll's meter does not take apart (page cache is part of memory usage):
    /// answered with a series without points, never with made-up numbers.
    static let unmeasured: Set<String> = ["daytona.sandbox.memory.cache"]

    /// Most points per series in one answer; longer ranges are thinned evenly.
    static let maximumPoints = 1000

    func register(_ api: RouterGroup<AtollContext>) {
        api.get("config") { request, _ in
            try JSON.response(configuration(request))
        }
        api.get("sandbox/:idOrName/telemetry/metrics") { request, context in
            let to = try SandboxRoutes.dateQuery(request, "to") ?? Date()
            let from = try SandboxRoutes.dateQuery(request, "from") ?? to.addingTimeInterval(-3600)
            guard from <= to else { throw AtollError(.invalidArgument, "from must not be after to") }
            let requested = SandboxRoutes.listQuery(request, "metricNames")
            var metrics: [Metric] = []
            for name in requested where !Self.unmeasured.contains(name) {
                guard let metric = Metric(rawValue: name) else {
                    throw AtollError(
                        .invalidArgument,
                        "metricNames: unknown metric \"\(name.prefix(64))\"; Atoll has \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                metrics.append(metric)
            }
            if metrics.isEmpty { metrics = Metric.allCases }
            let (sandbox, points) = try manager.usageSeries(
                try context.parameters.require("idOrName"), from: from, to: to, organizationId: try context.organization())
            let step = max(1, (points.count + Self.maximumPoints - 1) / Self.maximumPoints)
            let kept = stride(from: 0, to: points.count, by: step).map { points[$0] }
            let iso = ISO8601DateFormatter()
            let series =
                metrics.map { metric in
                    Series(
                        metricName: metric.rawValue,
                        dataPoints: kept.map {
                            DataPoint(timestamp: iso.string(from: Date(timeIntervalSince1970: Double($0.at))), value: metric.value($0, sandbox))
                        })
                } + requested.filter(Self.unmeasured.contains).map { Series(metricName: $0, dataPoints: []) }
            return try JSON.response(["series": series])
        }
    }

    struct OIDC: Encodable {
        var issuer = "", clientId = "", audience = "", provider = "none"
    }

    struct Configuration: Encodable {
        var version: String
        var oidc = OIDC()
        var linkedAccountsEnabled = false
        var announcements: [String: String] = [:]
        var proxyTemplateUrl: String
        var proxyToolboxUrl: String
        var defaultSnapshot = "default"
        var dashboardUrl: String
        var maxAutoArchiveInterval: Int
        var maintananceMode = false
        var environment = "atoll"
        var analyticsApiUrl: String? = nil
    }

    /// Daytona's deployment configuration as far as Atoll has one: no identity provider (API
    /// keys only), no analytics service, preview URLs by host.
    func configuration(_ request: Request) -> Configuration {
        let toolbox = server.toolboxURL(for: request)
        let base = String(toolbox.dropLast("/toolbox".count))
        let port = base.split(separator: ":").last.flatMap { Int($0) }.map { ":\($0)" } ?? ""
        return Configuration(
            version: AtollVersion.current, proxyTemplateUrl: "http://{{PORT}}-{{sandboxId}}.\(server.previewDomain)\(port)",
            proxyToolboxUrl: toolbox, dashboardUrl: base, maxAutoArchiveInterval: LifecycleIntervals.maximumAutoArchive)
    }
}
