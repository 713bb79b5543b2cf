import AtollCore
import AtollDaytona
import AtollLinux
import AtollRuntime
import AtollStore
import AtollWire
import Foundation
import Glibc
import Hummingbird

/// Daytona's snapshot API under `/api/snapshots`, and the build logs of snapshots and of
/// sandboxes created from a Dockerfile (`build-logs-url`, then the log as chunked HTTP that
/// follows the build until it ends).
struct SnapshotRoutes {
    let manager: SandboxManager
    let server: ServerSettings

    var catalog: SnapshotCatalog { manager.snapshots }

    func register(_ api: RouterGroup<AtollContext>) {
        api.post("snapshots") { request, context in
            let body = try await JSON.decode(CreateSnapshotRequest.self, from: request, context: context)
            let record = try catalog.create(try body.request(organizationId: try context.organization()))
            // 200, not 201: the SDK's generated client returns None for a 201 here.
            return try JSON.response(SnapshotDTO(record))
        }
        api.get("snapshots") { request, context in
            let page = try SandboxRoutes.integerQuery(request, "page", default: 1, range: 1...1_000_000)
            let limit = try SandboxRoutes.integerQuery(request, "limit", default: 100, range: 1...200)
            let (items, total) = try catalog.list(organizationId: try context.organization(), page: page, limit: limit)
            return try JSON.response(
                PaginatedSnapshots(items: items.map(SnapshotDTO.init), total: total, page: page, totalPages: max(1, (total + limit - 1) / limit)))
        }
        api.get("snapshots/:idOrName") { _, context in
            try JSON.response(SnapshotDTO(try catalog.get(try snapshotName(context), organizationId: try context.organization())))
        }
        api.delete("snapshots/:idOrName") { _, context in
            try catalog.delete(try snapshotName(context), organizationId: try context.organization())
            return JSON.empty(.ok)
        }
        api.post("snapshots/:idOrName/activate") { _, context in
            try JSON.response(
                SnapshotDTO(try catalog.activate(try snapshotName(context), organizationId: try context.organization())))
        }
        api.get("snapshots/:idOrName/build-logs-url") { request, context in
            let record = try catalog.get(try snapshotName(context), organizationId: try context.organization())
            return try JSON.response(URLBody(url: "\(apiURL(request))/snapshots/\(record.id)/build-logs"))
        }
        api.get("snapshots/:idOrName/build-logs") { request, context in
            let record = try catalog.get(try snapshotName(context), organizationId: try context.organization())
            return try logResponse(record.id, follow: try request.boolQuery("follow") ?? false)
        }
        // Daytona's sandbox.create_snapshot: answers the sandbox, in the state it was in.
        api.post("sandbox/:idOrName/snapshot") { request, context in
            struct Body: Decodable { var name: String }
            let body = try await JSON.decode(Body.self, from: request, context: context)
            let sandbox = try await manager.createSnapshot(
                fromSandbox: try context.parameters.require("idOrName"), name: body.name, organizationId: try context.organization())
            return try JSON.response(server.dto(sandbox, request))
        }
        api.get("sandbox/:idOrName/build-logs-url") { request, context in
            let sandbox = try await manager.get(try context.parameters.require("idOrName"), organizationId: try context.organization())
            return try JSON.response(URLBody(url: "\(apiURL(request))/sandbox/\(sandbox.id.rawValue)/build-logs"))
        }
        api.get("sandbox/:idOrName/build-logs") { request, context in
            let org = try context.organization()
            let sandbox = try await manager.get(try context.parameters.require("idOrName"), organizationId: org)
            guard let record = try? catalog.get(sandbox.snapshot, organizationId: org) else {
                throw AtollError(.notFound, "sandbox \(sandbox.id) was not built from an image: it has no build log")
            }
            return try logResponse(record.id, follow: try request.boolQuery("follow") ?? false)
        }
    }

    /// A snapshot's id or name from the path: names like `daytonaio/sandbox:0.5.0` arrive
    /// percent-encoded (the SDK quotes `/` and `:`).
    func snapshotName(_ context: AtollContext) throws -> String {
        let raw = try context.parameters.require("idOrName")
        return raw.removingPercentEncoding ?? raw
    }

    func apiURL(_ request: Request) -> String {
        String(server.toolboxURL(for: request).dropLast("/toolbox".count)) + "/api"
    }

    /// The log so far, or (following) the log as it grows, until the snapshot is made.
    func logResponse(_ id: String, follow: Bool) throws -> Response {
        let path = catalog.logPath(id)
        let catalog = self.catalog
        return Response(
            status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
            body: ResponseBody { writer in
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                defer { if fd >= 0 { close(fd) } }
                var buffer = [UInt8](repeating: 0, count: 65536)
                var offset: off_t = 0
                while true {
                    let n = fd < 0 ? 0 : buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
                    if n > 0 {
                        offset += off_t(n)
                        try await writer.write(ByteBuffer(bytes: buffer[0..<n]))
                        continue
                    }
                    guard follow, let record = try? catalog.record(id: id),
                        SnapshotState(rawValue: record.state)?.isInProgress == true
                    else {
                        // One more read: lines written just before the state changed.
                        if follow, fd >= 0 {
                            let last = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
                            if last > 0 { try await writer.write(ByteBuffer(bytes: buffer[0..<last])) }
                        }
                        break
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                try await writer.finish(nil)
            })
    }
}
