import AtollCore
import AtollDaytona
import AtollRuntime
import AtollWire
import Foundation
import Hummingbird

/// Atoll's own endpoints next to Daytona's API (docs/atoll-openapi.json): `GET /api/usage` and
/// `GET /api/warm-pool`.
struct UsageRoutes {
    let manager: SandboxManager

    func register(_ api: RouterGroup<AtollContext>) {
        api.get("usage", use: usage)
        api.get("warm-pool") { _, context -> Response in
            try context.requireAdmin("GET /api/warm-pool")
            return try JSON.response(try await manager.warmPoolStatus().map(WarmPoolDTO.init))
        }
    }

    /// `sandboxId`, `from` and `to` (ISO 8601 or seconds since 1970; default the last 24 hours)
    /// and `groupBy` (`sandbox` or `label:KEY`).
    @Sendable func usage(_ request: Request, context: AtollContext) async throws -> Response {
        let now = Date()
        let to = try request.query("to").map { try Self.time($0, field: "to") } ?? now
        let from = try request.query("from").map { try Self.time($0, field: "from") } ?? to.addingTimeInterval(-86400)
        let groupBy = try request.query("groupBy").map { try UsageGrouping(parsing: $0) } ?? .sandbox
        let sandboxId = request.query("sandboxId").flatMap { $0.isEmpty ? nil : $0 }
        let report = try await manager.usageReport(
            UsageQuery(
                sandboxId: sandboxId, from: from, to: to, groupBy: groupBy, organizationId: try context.organization()))
        return try JSON.response(UsageResponse(report))
    }

    /// A point in time: ISO 8601 (with or without fractional seconds) or seconds since 1970.
    static func time(_ text: String, field: String) throws -> Date {
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 { return Date(timeIntervalSince1970: seconds) }
        if let date = UsageTime.iso8601(text) { return date }
        throw AtollError(.invalidArgument, "\(field) must be an ISO 8601 time such as 2026-11-30T00:00:00Z or seconds since 1970, got \"\(text.prefix(40))\"")
    }
}
