import AtollCore
import AtollRuntime
import AtollWire
import Foundation
import Testing

@testable import AtollAPI

@Suite("API: host path redaction, connection limits")
struct StreamingTests {
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
