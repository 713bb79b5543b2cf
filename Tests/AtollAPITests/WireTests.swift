import AtollWire
import Foundation
import Testing

@testable import AtollAPI

@Suite("API: file modes, decoding errors")
struct WireTests {
    @Test(
        "file modes in Go's FileMode form, as Daytona's daemon sends them",
        arguments: [
            (UInt32(0o100644), "-rw-r--r--"), (0o040755, "drwxr-xr-x"), (0o120777, "Lrwxrwxrwx"), (0o104755, "urwxr-xr-x"),
            (0o041777, "dtrwxrwxrwx"), (0o020666, "Dcrw-rw-rw-"), (0o010600, "prw-------"), (0o102750, "grwxr-x---"),
        ])
    func modes(mode: UInt32, expected: String) {
        #expect(ToolboxRoutes.FileInfoDTO.goMode(mode) == expected)
    }

    @Test("decoding errors name the field and the expected type")
    func decodingErrors() throws {
        struct Body: Decodable {
            var cpu: Int?
            var labels: [String: String]?
        }
        func message(_ json: String) -> String {
            switch Result(catching: { try JSONDecoder().decode(Body.self, from: Data(json.utf8)) }) {
            case .success: return "decoded"
            case .failure(let error as DecodingError): return JSON.describe(error)
            case .failure(let error): return "\(error)"
            }
        }
        #expect(message(#"{"cpu": "two"}"#) == "cpu must be an integer")
        #expect(message(#"{"labels": {"a": 1}}"#) == "labels.a must be a string")
        #expect(message("{nope") == "not valid JSON")
        #expect(message(#"{"cpu": 1}"#) == "decoded")
    }
}
