import AtollWire
import Foundation
import Testing

@Suite("wire: multipart, whole and streamed")
struct MultipartTests {
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

    static func body(_ boundary: String) -> [UInt8] {
        let binary = (0..<5000).map { UInt8($0 % 251) } + Array("\r\n--\(boundary.dropLast())x\r\n".utf8)
        return Array("preamble\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\ndir/a.bin\r\n".utf8)
            + Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"a.bin\"\r\n\r\n".utf8) + binary
            + Array("\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--\(boundary)--\r\nepilogue".utf8)
    }

    /// Feeds `bytes` in pieces of `size` and joins what comes out per part.
    static func parse(_ bytes: [UInt8], boundary: String, size: Int) throws -> [(name: String, filename: String?, data: [UInt8])] {
        var parser = Multipart.StreamParser(boundary: boundary)
        var parts: [(name: String, filename: String?, data: [UInt8])] = []
        var open = false
        var offset = 0
        while offset < bytes.count {
            for event in try parser.feed(Array(bytes[offset..<min(bytes.count, offset + size)])) {
                switch event {
                case .partStart(let name, let filename):
                    #expect(!open)
                    parts.append((name, filename, []))
                    open = true
                case .data(let data):
                    #expect(open)
                    parts[parts.count - 1].data += data
                case .partEnd:
                    #expect(open)
                    open = false
                }
            }
            offset += size
        }
        try parser.finish()
        return parts
    }

    @Test("the streaming parser finds the same parts whatever the chunk sizes, boundaries split included", arguments: [1, 2, 7, 64, 4096, 1 << 20])
    func streamingParser(size: Int) throws {
        let boundary = "ATOLL-b0undary-42"
        let body = Self.body(boundary)
        let parts = try Self.parse(body, boundary: boundary, size: size)
        #expect(parts.map(\.name) == ["files[0].path", "files[0].file", "empty"])
        #expect(String(decoding: parts[0].data, as: UTF8.self) == "dir/a.bin")
        #expect(parts[1].filename == "a.bin")
        #expect(parts[1].data == (0..<5000).map { UInt8($0 % 251) } + Array("\r\n--\(boundary.dropLast())x\r\n".utf8))
        #expect(parts[2].data.isEmpty)
        // The old whole-body parser agrees.
        let whole = try Multipart.parse(Data(body), boundary: boundary)
        #expect(whole.map { [UInt8]($0.body) } == parts.map(\.data))
    }

    @Test("the streaming writer's pieces parse back; malformed streams are named")
    func streamingWriterAndErrors() throws {
        let writer = Multipart.StreamWriter()
        let body =
            writer.header(name: "file", filename: "/tmp/a\r\nX-Injected: 1", contentType: "application/octet-stream") + Array("abc".utf8)
            + writer.separator + writer.closing
        let parts = try Multipart.parse(Data(body), boundary: writer.boundary)
        #expect(parts.count == 1 && parts[0].body == Data("abc".utf8))
        #expect(!String(decoding: body, as: UTF8.self).contains("\r\nX-Injected"), "a file name cannot inject a header line")
        #expect(parts[0].filename == "/tmp/a\r\nX-Injected: 1", "the name itself comes back whole (RFC 5987)")
        var truncated = Multipart.StreamParser(boundary: "b")
        _ = try truncated.feed(Array("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunfinished".utf8))
        #expect(throws: MultipartError.self) { try truncated.finish() }
        var nameless = Multipart.StreamParser(boundary: "b")
        #expect(throws: MultipartError.self) { _ = try nameless.feed(Array("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--".utf8)) }
        var huge = Multipart.StreamParser(boundary: "b")
        #expect(throws: MultipartError.self) { _ = try huge.feed(Array("--b\r\n".utf8) + [UInt8](repeating: 65, count: 20000)) }
    }
}
