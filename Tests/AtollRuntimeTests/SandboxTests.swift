import AtollTestSupport
import Testing

/// Every test that runs real sandboxes, one at a time: CPU and memory measurements need the
/// machine to themselves, and 2-core CI machines have nothing to spare. The suites live in
/// extensions, one file each.
@Suite("Sandboxes", .sandboxes, .serialized)
struct SandboxTests {}
