import AtollWire
import Foundation
import Testing

@testable import AtollAPI

@Suite("API: multipart, modes, Dockerfiles, decoding errors")
struct WireTests {
    @Test("multipart: what the writer writes, the parser reads back, byte for byte")
    func multipartRoundTrip() throws {
        var writer = Multipart.Writer()
        let binary = Data((0..<1000).map { UInt8($0 % 256) }) + Data("\r\n--not-a-boundary\r\n".utf8)
        writer.addField(name: "files[0].path", value: "dir/a.bin")
        writer.add(name: "files[0].file", filename: "dir/a.bin", contentType: "application/octet-stream", data: binary)
        writer.add(name: "file", filename: "naïve \"quoted\".txt", contentType: "text/plain", data: Data())
        let body = writer.finish()
        let parts = try Multipart.parse(body, boundary: try Multipart.boundary(contentType: writer.contentType))
        #expect(parts.map(\.name) == ["files[0].path", "files[0].file", "file"])
        #expect(String(decoding: parts[0].body, as: UTF8.self) == "dir/a.bin")
        #expect(parts[1].body == binary && parts[1].filename == "dir/a.bin")
        #expect(parts[2].body.isEmpty && parts[2].filename == "naïve \"quoted\".txt")
    }

    @Test("multipart: the SDK's upload layout, and malformed bodies are named")
    func multipartSDK() throws {
        let b = "f1bcc0d034c4f29e11739062036084b9"
        let body = Data(
            "--\(b)\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\na/b.txt\r\n--\(b)\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"a/b.txt\"\r\nContent-Type: text/plain\r\n\r\ndata\r\n--\(b)--\r\n"
                .utf8)
        let parts = try Multipart.parse(body, boundary: try Multipart.boundary(contentType: "multipart/form-data; boundary=\(b)"))
        #expect(parts.count == 2 && String(decoding: parts[1].body, as: UTF8.self) == "data")
        #expect(throws: MultipartError.self) { try Multipart.boundary(contentType: "application/json") }
        #expect(throws: MultipartError.self) {
            try Multipart.parse(Data("--\(b)\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ntruncated".utf8), boundary: b)
        }
        #expect(throws: MultipartError.self) { try Multipart.parse(Data("no boundary at all".utf8), boundary: b) }
    }

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
