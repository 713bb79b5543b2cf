import AtollCore
import AtollRuntime
import AtollWire
import Foundation
import Testing

@testable import AtollAPI

@Suite("API: streaming multipart, host path redaction, connection limits")
struct StreamingTests {
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

    @Test("host paths in messages become $ATOLL_DATA and $ATOLL_SNAPSHOTS")
    func redaction() {
        let configuration = RuntimeConfiguration(dataDirectory: "/srv/atoll", snapshotsDirectory: "/srv/atoll/snapshots")
        let redact = HostPathRedaction(configuration: configuration)
        #expect(redact("mount(/srv/atoll/sandboxes/x/mnt): EBUSY") == "mount($ATOLL_DATA/sandboxes/x/mnt): EBUSY")
        #expect(redact("lowerdir=/srv/atoll/snapshots/default/rootfs") == "lowerdir=$ATOLL_SNAPSHOTS/default/rootfs")
        #expect(redact("/home/sandbox/x: no such file") == "/home/sandbox/x: no such file")
    }

    @Test("the connection cap keeps a reserve of descriptors; limits come from the environment")
    func connectionLimits() throws {
        let limits = ConnectionLimits()
        #expect(limits.effectiveTotal(descriptorLimit: 1_048_576) == 4096)
        #expect(limits.effectiveTotal(descriptorLimit: 1024) == 16, "a tiny limit still leaves the reserve free")
        #expect(limits.effectiveTotal(descriptorLimit: 8192) == 4096 && limits.effectiveTotal(descriptorLimit: 4096) == 3072)
        let custom = try ConnectionLimits.fromEnvironment(["ATOLL_HTTP_MAX_CONNECTIONS_PER_PEER": "5", "ATOLL_HTTP_IDLE_SECONDS": "2"])
        #expect(custom.perPeer == 5 && custom.idleSeconds == 2 && custom.total == 4096)
        #expect(throws: AtollError.self) { try ConnectionLimits.fromEnvironment(["ATOLL_HTTP_STALL_SECONDS": "0"]) }
        let peers = PeerCounter()
        #expect(peers.open("10.0.0.1", limit: 2) && peers.open("10.0.0.1", limit: 2))
        #expect(!peers.open("10.0.0.1", limit: 2) && peers.open("10.0.0.2", limit: 2))
        peers.close("10.0.0.1")
        #expect(peers.count("10.0.0.1") == 1 && peers.open("10.0.0.1", limit: 2))
    }
}
