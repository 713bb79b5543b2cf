import AsyncHTTPClient
import AtollCore
import Foundation
import NIOCore
import NIOHTTP1

/// The bench's HTTP client: async-http-client held to one keep-alive connection (as the SDK's
/// connection pool keeps one), so a figure measures the daemon, not connection set-up. Requests
/// are made one at a time and waited for (the bench measures latency, not throughput).
final class BenchHTTP {
    let baseURL: String
    let key: String
    let client: HTTPClient

    init(url: String, key: String) throws {
        guard let parsed = URL(string: url), parsed.host != nil, parsed.port != nil else {
            throw AtollError(.invalidArgument, "not an http://HOST:PORT URL: \(url)")
        }
        self.baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.key = key
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(600))
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    deinit { try? client.syncShutdown() }

    /// Sends a request and returns the status and body.
    func request(_ method: String, _ path: String, json: String? = nil) throws -> (status: Int, body: [UInt8]) {
        var request = try HTTPClient.Request(url: baseURL + path, method: HTTPMethod(rawValue: method))
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .string(json)
        }
        do {
            let response = try client.execute(request: request).wait()
            return (Int(response.status.code), response.body.map { Array($0.readableBytesView) } ?? [])
        } catch let error as AtollError {
            throw error
        } catch {
            throw AtollError(.unavailable, "\(method) \(path): \(error)", cause: error)
        }
    }

    /// The body as JSON; a status other than 200–299 throws with the body's message.
    func json(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
        let (status, bytes) = try request(method, path, json: body)
        let value = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        guard (200..<300).contains(status) else {
            throw AtollError(.system, "\(method) \(path) answered \(status): \(String(decoding: bytes.prefix(300), as: UTF8.self))")
        }
        return value as? [String: Any] ?? ["items": value]
    }
}
