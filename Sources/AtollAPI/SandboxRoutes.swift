import AtollCore
import AtollDaytona
import AtollRuntime
import AtollWire
import Foundation
import Hummingbird

/// Daytona's sandbox API under `/api/sandbox`: status codes, required fields and camelCase as
/// the official SDK needs them. Fast transitions (create, start, stop) answer with their final
/// state, so the SDK does not need to poll.
struct SandboxRoutes {
    let manager: SandboxManager
    let server: ServerSettings

    func register(_ api: RouterGroup<AtollContext>) {
        api.post("sandbox", use: create)
        api.get("sandbox", use: list)
        api.get("sandbox/paginated", use: paginated)
        api.get("sandbox/:idOrName", use: get)
        api.delete("sandbox/:idOrName", use: delete)
        api.post("sandbox/:idOrName/start") { request, context in
            try await respond(request, context) { try await manager.start($0, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/stop") { request, context in
            let force = try request.boolQuery("force") ?? false
            return try await respond(request, context) { try await manager.stop($0, force: force, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/pause") { request, context in
            try await respond(request, context) { try await manager.pause($0, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/autopause/:minutes") { request, context in
            let minutes = try context.parameters.integer("minutes")
            return try await respond(request, context) { try await manager.setAutoPause($0, minutes: minutes, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/ttl/:minutes") { request, context in
            let minutes = try context.parameters.integer("minutes")
            return try await respond(request, context) { try await manager.setTTL($0, minutes: minutes, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/archive") { request, context in
            try await respond(request, context) { try await manager.archive($0, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/recover") { request, context in
            try await respond(request, context) { try await manager.recover($0, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/resize", use: resize)
        api.post("sandbox/:idOrName/network-settings") { request, context in
            let body = try await JSON.decode(NetworkSettingsBody.self, from: request, context: context)
            return try await respond(request, context) {
                try await manager.updateNetworkSettings(
                    $0, blockAll: body.networkBlockAll, allowList: body.networkAllowList,
                    domainAllowList: body.domainAllowList, organizationId: $1)
            }
        }
        api.put("sandbox/:idOrName/labels", use: setLabels)
        api.post("sandbox/:idOrName/autostop/:minutes") { request, context in
            let minutes = try context.parameters.integer("minutes")
            return try await respond(request, context) { try await manager.setAutoStop($0, minutes: minutes, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/autoarchive/:minutes") { request, context in
            let minutes = try context.parameters.integer("minutes")
            return try await respond(request, context) { try await manager.setAutoArchive($0, minutes: minutes, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/autodelete/:minutes") { request, context in
            let minutes = try context.parameters.integer("minutes")
            return try await respond(request, context) { try await manager.setAutoDelete($0, minutes: minutes, organizationId: $1) }
        }
        api.post("sandbox/:idOrName/last-activity") { _, context in
            try await manager.touch(try context.parameters.require("idOrName"), organizationId: try context.organization())
            return JSON.empty(.created)
        }
        // Daytona's signing key of signed file URLs: a JSON string.
        api.get("sandbox/:idOrName/signing-key") { _, context in
            try JSON.response(try await manager.signingKey(try context.parameters.require("idOrName"), organizationId: try context.organization()))
        }
        api.post("sandbox/:idOrName/signing-key/rotate") { _, context in
            try JSON.response(try await manager.rotateSigningKey(try context.parameters.require("idOrName"), organizationId: try context.organization()))
        }
        api.get("sandbox/:idOrName/toolbox-proxy-url") { request, context in
            _ = try await manager.get(try context.parameters.require("idOrName"), organizationId: try context.organization())
            return try JSON.response(URLBody(url: server.toolboxURL(for: request)))
        }
    }

    /// Runs `body` for the path's sandbox and the caller's organization; answers with the sandbox.
    func respond(_ request: Request, _ context: AtollContext, _ body: (String, String) async throws -> Sandbox) async throws -> Response {
        let sandbox = try await body(try context.parameters.require("idOrName"), try context.organization())
        return try JSON.response(server.dto(sandbox, request))
    }

    @Sendable func create(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(CreateSandboxRequest.self, from: request, context: context, allowEmpty: true)
        let sandbox = try await manager.create(body, organizationId: try context.organization())
        return try JSON.response(server.dto(sandbox, request))
    }

    @Sendable func get(_ request: Request, context: AtollContext) async throws -> Response {
        try await respond(request, context) { try await manager.get($0, organizationId: $1) }
    }

    @Sendable func delete(_ request: Request, context: AtollContext) async throws -> Response {
        try await respond(request, context) { try await manager.delete($0, organizationId: $1) }
    }

    /// The `labels` query parameter: URL-encoded JSON of string values, matched as a subset.
    static func labelFilter(_ request: Request) throws -> [String: String] {
        guard let text = request.query("labels"), !text.isEmpty else { return [:] }
        guard let labels = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else {
            throw AtollError(.invalidArgument, "labels must be a JSON object of strings, e.g. {\"suite\":\"e2e\"}")
        }
        return labels
    }

    /// Sandboxes matching every filter the SDK's list sends (labels, states, id / name prefixes,
    /// snapshots, resource ranges, public and recoverable flags, creation and last-event dates),
    /// in the order `sort` / `order` ask for. A filter Atoll cannot apply is a 400 naming it,
    /// never ignored: a caller would act on sandboxes it did not select.
    func filtered(_ request: Request, _ context: AtollContext) async throws -> [Sandbox] {
        var sandboxes = try await manager.list(labels: try Self.labelFilter(request), organizationId: try context.organization())
        let states = Self.listQuery(request, "states")
        if !states.isEmpty {
            for state in states where SandboxState(rawValue: state) == nil {
                throw AtollError(.invalidArgument, "states: unknown state \"\(state.prefix(32))\"")
            }
            sandboxes = sandboxes.filter { states.contains($0.state.rawValue) }
        }
        if let prefix = request.query("name") { sandboxes = sandboxes.filter { $0.name.hasPrefix(prefix) } }
        if let prefix = request.query("id") { sandboxes = sandboxes.filter { $0.id.rawValue.hasPrefix(prefix) } }
        let snapshots = Self.listQuery(request, "snapshots")
        if !snapshots.isEmpty { sandboxes = sandboxes.filter { snapshots.contains($0.snapshot) } }
        // Atoll is one host: its only region is "local" (SandboxDTO.target).
        let regions = Self.listQuery(request, "regionIds")
        if !regions.isEmpty, !regions.contains("local") { sandboxes = [] }
        for (name, value) in [("minCpu", \Sandbox.resources.cpu), ("minMemoryGiB", \.resources.memoryGiB), ("minDiskGiB", \.resources.diskGiB)] {
            if let bound = try Self.optionalInteger(request, name) { sandboxes = sandboxes.filter { $0[keyPath: value] >= bound } }
        }
        for (name, value) in [("maxCpu", \Sandbox.resources.cpu), ("maxMemoryGiB", \.resources.memoryGiB), ("maxDiskGiB", \.resources.diskGiB)] {
            if let bound = try Self.optionalInteger(request, name) { sandboxes = sandboxes.filter { $0[keyPath: value] <= bound } }
        }
        if let isPublic = try request.boolQuery("isPublic") { sandboxes = sandboxes.filter { $0.isPublic == isPublic } }
        if let recoverable = try request.boolQuery("isRecoverable") {
            sandboxes = sandboxes.filter { ($0.state == .error && $0.recoverable) == recoverable }
        }
        // Daytona's "last event" is the last state change: Atoll's updatedAt.
        for (name, value, after) in [
            ("createdAtAfter", \Sandbox.createdAt, true), ("createdAtBefore", \.createdAt, false),
            ("lastEventAfter", \.updatedAt, true), ("lastEventBefore", \.updatedAt, false),
        ] {
            guard let bound = try Self.dateQuery(request, name) else { continue }
            sandboxes = sandboxes.filter { after ? $0[keyPath: value] > bound : $0[keyPath: value] < bound }
        }
        // When a TTL deletes the sandbox; sandboxes without one match neither bound.
        if let bound = try Self.dateQuery(request, "autoDestroyAtAfter") { sandboxes = sandboxes.filter { ($0.expiresAt ?? .distantPast) > bound } }
        if let bound = try Self.dateQuery(request, "autoDestroyAtBefore") { sandboxes = sandboxes.filter { ($0.expiresAt ?? .distantFuture) < bound } }
        return try Self.sorted(sandboxes, by: request.query("sort"), order: request.query("order"))
    }

    /// A list parameter, repeated or comma-separated.
    static func listQuery(_ request: Request, _ name: String) -> [String] {
        request.uri.queryParameters.getAll(name).flatMap { $0.split(separator: ",").map(String.init) }.filter { !$0.isEmpty }
    }

    /// An integer parameter, nil when absent; out of `range` (when given) or not a number is a 400.
    static func optionalInteger(_ request: Request, _ name: String, range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let text = request.query(name), !text.isEmpty else { return nil }
        guard let number = Int(text), range?.contains(number) ?? true else {
            let expected = range.map { "an integer between \($0.lowerBound) and \($0.upperBound)" } ?? "an integer"
            throw AtollError(.invalidArgument, "\(name) must be \(expected), got \"\(text.prefix(32))\"")
        }
        return number
    }

    /// An ISO 8601 date (with or without fractional seconds), as the SDK sends them.
    static func dateQuery(_ request: Request, _ name: String) throws -> Date? {
        guard let text = request.query(name), !text.isEmpty else { return nil }
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // Python's isoformat() writes microseconds: keep at most milliseconds for the parser.
        // A "+01:00" offset whose '+' arrived unescaped reads as a space.
        let trimmed = text.replacingOccurrences(of: " ", with: "+").replacingOccurrences(
            of: #"(\.\d{3})\d+"#, with: "$1", options: .regularExpression)
        guard let date = fractional.date(from: trimmed) ?? plain.date(from: trimmed) else {
            throw AtollError(.invalidArgument, "\(name) must be an ISO 8601 date such as 2026-12-07T18:00:00Z, got \"\(text.prefix(40))\"")
        }
        return date
    }

    /// Daytona's sort fields and orders; creation order (oldest first) by default.
    static func sorted(_ sandboxes: [Sandbox], by field: String?, order: String?) throws -> [Sandbox] {
        let descending: Bool
        switch order ?? "" {
        case "", "asc": descending = false
        case "desc": descending = true
        default: throw AtollError(.invalidArgument, "order must be asc or desc, got \"\(order!.prefix(16))\"")
        }
        let ascending: (Sandbox, Sandbox) -> Bool
        switch field ?? "" {
        case "": return descending ? sandboxes.reversed() : sandboxes
        case "id": ascending = { $0.id.rawValue < $1.id.rawValue }
        case "name": ascending = { $0.name < $1.name }
        case "state": ascending = { $0.state.rawValue < $1.state.rawValue }
        case "snapshot": ascending = { $0.snapshot < $1.snapshot }
        case "region": return descending ? sandboxes.reversed() : sandboxes
        case "createdAt": ascending = { $0.createdAt < $1.createdAt }
        case "updatedAt": ascending = { $0.updatedAt < $1.updatedAt }
        case "lastActivityAt": ascending = { $0.lastActivityAt < $1.lastActivityAt }
        default:
            throw AtollError(
                .invalidArgument, "sort must be one of id, name, state, snapshot, region, createdAt, updatedAt, lastActivityAt; got \"\(field!.prefix(32))\"")
        }
        // Stable: ties keep creation order.
        let indexed = sandboxes.enumerated().sorted { a, b in
            if ascending(a.element, b.element) { return !descending }
            if ascending(b.element, a.element) { return descending }
            return a.offset < b.offset
        }
        return indexed.map(\.element)
    }

    @Sendable func list(_ request: Request, context: AtollContext) async throws -> Response {
        let sandboxes = try await filtered(request, context)
        let limit = try Self.integerQuery(request, "limit", default: 100, range: 1...200)
        var offset = 0
        if let cursor = request.query("cursor"), !cursor.isEmpty {
            guard let data = Data(base64Encoded: cursor), let value = Int(String(decoding: data, as: UTF8.self)), value >= 0 else {
                throw AtollError(.invalidArgument, "cursor \"\(cursor.prefix(32))\" is not one this server handed out")
            }
            offset = value
        }
        let page = Array(sandboxes.dropFirst(offset).prefix(limit))
        let next = offset + page.count < sandboxes.count ? Data("\(offset + page.count)".utf8).base64EncodedString() : nil
        let url = server.toolboxURL(for: request)
        return try JSON.response(ListSandboxesResponse(items: page.map { server.dto($0, url) }, nextCursor: next))
    }

    @Sendable func paginated(_ request: Request, context: AtollContext) async throws -> Response {
        let sandboxes = try await filtered(request, context)
        let limit = try Self.integerQuery(request, "limit", default: 10, range: 1...200)
        let page = try Self.integerQuery(request, "page", default: 1, range: 1...Int(Int32.max))
        let items = Array(sandboxes.dropFirst((page - 1) * limit).prefix(limit))
        let url = server.toolboxURL(for: request)
        return try JSON.response(
            PaginatedSandboxes(
                items: items.map { server.dto($0, url) }, total: sandboxes.count, page: page,
                totalPages: max(1, (sandboxes.count + limit - 1) / limit)))
    }

    static func integerQuery(_ request: Request, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        try optionalInteger(request, name, range: range) ?? value
    }

    @Sendable func resize(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(ResizeBody.self, from: request, context: context)
        if let gpu = body.gpu, gpu > 0 { throw AtollError(.invalidArgument, "gpu: this host has no GPUs to give") }
        return try await respond(request, context) {
            try await manager.resize($0, cpu: body.cpu, memoryGiB: body.memory, diskGiB: body.disk, organizationId: $1)
        }
    }

    @Sendable func setLabels(_ request: Request, context: AtollContext) async throws -> Response {
        let body = try await JSON.decode(LabelsBody.self, from: request, context: context)
        let sandbox = try await manager.setLabels(try context.parameters.require("idOrName"), body.labels, organizationId: try context.organization())
        return try JSON.response(LabelsBody(labels: sandbox.labels))
    }
}
