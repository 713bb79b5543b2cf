import AtollCore
import Foundation
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat

/// JSON in and out, with errors that say what was wrong.
enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// A JSON response with `status`.
    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An empty response (204, or 201 for creations the SDK does not read).
    static func empty(_ status: HTTPResponse.Status = .noContent) -> Response {
        Response(status: status)
    }

    /// Reads and decodes the body; bad JSON, wrong types and a too large body are 400/413 with a
    /// message naming the problem (the field and what was expected).
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: AtollContext, allowEmpty: Bool = false) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: APILimits.jsonBody)
        } catch {
            throw AtollError(.tooLarge, "request body is larger than \(APILimits.jsonBody) bytes")
        }
        var data = Data(buffer: buffer)
        if data.isEmpty && allowEmpty { data = Data("{}".utf8) }
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw AtollError(.invalidArgument, "invalid request body: \(describe(error))")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            let p = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "the body" : String(p.dropFirst(p.hasPrefix(".") ? 1 : 0))
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)) must be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) must be \(typeName(type)), not null"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "not valid JSON" }
            return "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "a boolean"
        case is [String: String].Type: return "an object of strings"
        case is [String].Type: return "an array of strings"
        default:
            let name = "\(type)"
            return name.hasPrefix("Dictionary") ? "an object" : name.hasPrefix("Array") ? "an array" : "a \(name)"
        }
    }
}

extension Request {
    /// A query parameter, percent-decoded.
    func query(_ name: String) -> String? {
        uri.queryParameters[Substring(name)].map { String($0) }
    }

    /// A required query parameter.
    func requireQuery(_ name: String) throws -> String {
        guard let value = query(name), !value.isEmpty else { throw AtollError(.invalidArgument, "query parameter \(name) is required") }
        return value
    }

    /// A boolean query parameter (`true`/`false`/`1`/`0`).
    func boolQuery(_ name: String) throws -> Bool? {
        guard let value = query(name) else { return nil }
        switch value.lowercased() {
        case "true", "1": return true
        case "false", "0", "": return false
        default: throw AtollError(.invalidArgument, "query parameter \(name) must be true or false, got \"\(value.prefix(32))\"")
        }
    }
}

extension Parameters {
    /// A path parameter as an integer, with a clear error.
    func integer(_ name: String) throws -> Int {
        guard let text = self.get(name), let value = Int(text) else {
            throw AtollError(.invalidArgument, "\(name) in the path must be an integer, got \"\(self.get(name)?.prefix(32) ?? "")\"")
        }
        return value
    }
}
