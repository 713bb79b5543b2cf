import AtollCore
import AtollTestSupport
import CRuntime
import Foundation
import Glibc
import Testing

@testable import AtollLinux

/// The kernel layer against the real kernel of this host: the cgroup backend it runs (v1 on the
/// hybrid build machines, v2 elsewhere), loop-backed disks, user namespaces and the shim's error
/// reporting. Each test creates its own cgroup top-level name and files, and removes them.
@Suite("host kernel", .privileged, .serialized)
struct HostKernelTests {
    func withCgroups<T>(_ body: (any CgroupManaging) throws -> T) throws -> T {
        let manager = try CgroupLayout.hostManager(groupName: "atoll-test-kernel-\(getpid())")
        defer {
            for name in ["g1", "g2"] {
                try? manager.killAll(name)
                try? manager.remove(name)
            }
            manager.removeTopLevelIfEmpty()
        }
        return try body(manager)
    }

    /// Starts `sleep` as our own child and moves it into the group through the placement handles,
    /// the way the shim's children place themselves.
    func sleeper(in manager: any CgroupManaging, _ name: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["60"]
        try process.run()
        if manager.version == .v1 {
            for dir in manager.directories(name) { try KernelFile.write("\(dir)/cgroup.procs", "\(process.processIdentifier)") }
        } else {
            try KernelFile.write("\(manager.directories(name)[0])/cgroup.procs", "\(process.processIdentifier)")
        }
        return process
    }

    @Test("the host's backend: limits, live update, usage, freeze, kill, removal")
    func hostCgroups() throws {
        try withCgroups { manager in
            let limits = CgroupLimits(cpuMillis: 500, memoryBytes: 256 << 20, pidsMax: 32)
            try manager.create("g1", limits: limits)
            let dirs = manager.directories("g1")
            #expect(dirs.allSatisfy { KernelFile.isDirectory($0) && $0.contains("/atoll-test-kernel-") })
            if manager.version == .v1 {
                let cpu = dirs.first { $0.contains("/cpu/") || $0.contains("/cpu,") }!
                #expect(try KernelFile.read("\(cpu)/cpu.cfs_quota_us") == "50000\n")
                let memory = dirs.first { $0.contains("/memory/") }!
                #expect(try KernelFile.read("\(memory)/memory.limit_in_bytes") == "\(256 << 20)\n")
                var bigger = limits
                bigger.cpuMillis = 1500
                try manager.update("g1", limits: bigger)
                #expect(try KernelFile.read("\(cpu)/cpu.cfs_quota_us") == "150000\n")
            } else {
                #expect(try KernelFile.read("\(dirs[0])/cpu.max") == "50000 100000\n")
            }

            let child = try sleeper(in: manager, "g1")
            #expect(try manager.processes("g1") == [child.processIdentifier])
            #expect(try manager.usage("g1").pids == 1)
            try manager.freeze("g1")
            try manager.thaw("g1")
            try manager.killAll("g1")
            child.waitUntilExit()
            #expect(child.terminationReason == .uncaughtSignal && child.terminationStatus == SIGKILL)
            #expect(try manager.processes("g1").isEmpty)
            try manager.remove("g1")
            #expect(dirs.allSatisfy { !KernelFile.exists($0) })
        }
    }

    @Test("an absent group is fine to kill and remove")
    func absentGroup() throws {
        try withCgroups { manager in
            try manager.killAll("g2")
            try manager.remove("g2")
            #expect(!manager.exists("g2"))
        }
    }

    @Test("a disk image is sparse, attaches to a loop device that detaches by itself, and grows")
    func disks() throws {
        let dir = "/var/tmp/atoll-test-disk-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try DiskImage.create(
            at: "\(dir)/disk.img", sizeBytes: 1 << 30,
            entries: [
                .init(path: "upper", kind: .directory, uid: 1 << 28, gid: 1 << 28, mode: 0o755),
                .init(path: "hello", kind: .file("hi\n"), uid: 1 << 28, gid: 1 << 28, mode: 0o644),
            ], scratch: dir)
        #expect(try image.sizeBytes() == 1 << 30)
        #expect(try image.allocatedBytes() < 64 << 20, "sparse: mkfs writes only metadata")
        let debugfs = try HostCommand.locate("debugfs", package: "e2fsprogs")
        let stat = try HostCommand.run(debugfs, ["-R", "stat /upper", image.path])
        #expect(stat.contains("User: \(1 << 28)"), "ownership set at mkfs time: \(stat.prefix(300))")

        do {
            let loop = try LoopAttachment.attach(image.path)
            #expect(LoopAttachment.backingFile(index: loop.index) == image.path)
            #expect(LoopAttachment.devices(backing: image.path) == [loop.index])
            loop.handle.close()
        }
        // Autoclear: with no mount and no open handle the device lets go of the image.
        try LoopAttachment.waitDetached(image: image.path, timeout: 5)

        try image.grow(to: 2 << 30)
        #expect(try image.sizeBytes() == 2 << 30)
        #expect(throws: AtollError.self) { try image.grow(to: 1 << 30) }
    }

    @Test("a failure inside the sandbox's first process names the call and the path")
    func spawnFailureNamesCallAndPath() throws {
        let spawner = try LinuxSpawner()
        let dir = "/var/tmp/atoll-test-spawn-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = SpawnSpec(
            plan: [.mount(source: "/dev/atoll-no-such-device", target: dir, fsType: "ext4", flags: 0, data: nil)],
            userNamespace: try UserNamespace.create(IDRange(base: 1 << 30, count: 65536)), hostname: "probe",
            cgroup: CgroupPlacement(directory: nil, procsFiles: []), identity: .root(capabilities: try CapabilitySet.sandboxRoot())
        )
        do {
            _ = try spawner.spawn(spec)
            Issue.record("spawn with a missing device succeeded")
        } catch let error as AtollError {
            #expect(error.message == "mount(\(dir)): No such file or directory (ENOENT)")
        }
        // The host's mount table is untouched: the attempt happened in the child's own namespace.
        #expect(try !MountInfo.current().contains { $0.mountPoint == dir })
    }

    @Test("a plan target that is a symlink is refused, not followed")
    func symlinkTargetsRefused() throws {
        let spawner = try LinuxSpawner()
        let dir = "/var/tmp/atoll-test-symlink-\(getpid())"
        try FileManager.default.createDirectory(atPath: "\(dir)/root", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A sandbox could leave "proc" as a symlink to a host path in its own filesystem.
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/root/proc", withDestinationPath: "/etc")
        let spec = SpawnSpec(
            plan: [.changeDirectory("\(dir)/root"), .mount(source: "proc", target: "proc", fsType: "proc", flags: 0, data: nil)],
            userNamespace: try UserNamespace.create(IDRange(base: 1 << 30, count: 65536)), hostname: "probe",
            cgroup: CgroupPlacement(directory: nil, procsFiles: []), identity: .root(capabilities: try CapabilitySet.sandboxRoot())
        )
        do {
            _ = try spawner.spawn(spec)
            Issue.record("spawn mounted over a symlink")
        } catch let error as AtollError {
            #expect(error.message.hasPrefix("openat2(beneath, no symlinks)(proc)"), "\(error.message)")
        }
    }

    @Test("a user namespace maps the sandbox's ids to its host range")
    func userNamespace() throws {
        let ns = try UserNamespace.create(IDRange(base: 1 << 30, count: 65536))
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(ns.raw)")
        #expect(link.hasPrefix("user:["))
        let own = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/user")
        #expect(link != own)
    }
}
