import AtollCore
import AtollLinux
import AtollSandbox
import Foundation
import Glibc
import Testing

/// The driver's ordering on recording fakes of every host mechanism: what a start sets up before
/// PID 1 exists, what a failed start releases, the order stop and destroy take things down. No
/// root: PID 1 is a plain child process.
@Suite("sandbox driver: ordering on recording fakes")
final class DriverOrderingTests {
    struct Fixture {
        let recorder = Recorder()
        let cgroups: RecordingCgroups
        let spawner: RecordingSpawner
        let network: RecordingNetwork
        let configuration: DriverConfiguration

        init() throws {
            cgroups = RecordingCgroups(recorder: recorder)
            spawner = RecordingSpawner(recorder: recorder, cgroups: cgroups)
            network = try RecordingNetwork(recorder: recorder)
            let dir = "/tmp/atoll-driver-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: "\(dir)/snapshots/default/rootfs", withIntermediateDirectories: true)
            configuration = DriverConfiguration(
                dataDirectory: dir, snapshotsDirectory: "\(dir)/snapshots", cgroupName: "atoll-test",
                network: nil)
        }

        /// A driver on the fakes; `networked` gives it the recording network.
        func driver(networked: Bool = false) throws -> SandboxDriver {
            try SandboxDriver(
                configuration: configuration,
                mechanisms: HostMechanisms(
                    spawner: spawner, cgroups: cgroups, disks: RecordingDisks(recorder: recorder),
                    userNamespaces: RecordingUserNamespaces(recorder: recorder), network: networked ? network : nil,
                    rootCapabilities: CapabilitySet(mask: 0)))
        }

        func machine(_ name: String, networked: Bool = false) throws -> SandboxMachine {
            SandboxMachine(
                id: try SandboxID(name), snapshot: "default", resources: Resources(cpu: 2, memoryGiB: 1, diskGiB: 3), pidsMax: 512,
                ids: IDRange(base: 1 << 28, count: 65536), env: [:], user: "sandbox",
                network: networked ? MachineNetwork(address: try #require(IPv4Address("10.77.0.5")), policy: .open) : nil)
        }

        /// A driver and a sandbox with its disk made, and an empty record of calls.
        func provisioned(
            _ name: String, networkedDriver: Bool = false, networkedMachine: Bool = false
        ) async throws
            -> (SandboxDriver, SandboxMachine)
        {
            let driver = try self.driver(networked: networkedDriver)
            let machine = try self.machine(name, networked: networkedMachine)
            try await driver.provision(machine)
            recorder.reset()
            return (driver, machine)
        }

        func cleanUp() { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
    }

    /// A fresh fixture per test (Swift Testing makes an instance per test), removed afterwards.
    let f: Fixture

    init() throws { f = try Fixture() }

    deinit { f.cleanUp() }

    @Test("provision makes the sandbox's directory and a disk of the asked size once")
    func provision() async throws {
        let driver = try f.driver()
        let machine = try f.machine("prov")
        try await driver.provision(machine)
        try await driver.provision(machine)
        #expect(f.recorder.calls("disk.") == ["disk.create 3GiB entries=8"], "an existing disk is kept")
        #expect(driver.hasDisk(machine))
    }

    @Test("start: the old mount is gone, then cgroup, task budget, disk device, placement, user namespace, and only then PID 1")
    func startOrder() async throws {
        let (driver, machine) = try await f.provisioned("order")
        let initProcess = try await driver.start(machine)
        #expect(
            f.recorder.calls.dropLast() == [
                "disk.waitDetached", "cgroup.create order cpu=2000 pids=512", "cgroup.limitTopLevelTasks", "disk.attach",
                "cgroup.placement order", "userns.create 268435456",
            ])
        #expect(f.recorder.calls.last?.hasPrefix("spawn order agent=true network=false") == true, "PID 1 comes last")
        #expect(initProcess.isRunning)
        // A second start of a sandbox whose cgroup exists empties and updates it instead.
        try await driver.stop(machine, initProcess: initProcess)
        f.recorder.reset()
        let again = try await driver.start(machine)
        #expect(f.recorder.calls("cgroup.").prefix(2) == ["cgroup.killAll order", "cgroup.update order cpu=2000"])
        try await driver.destroy(machine)
        #expect(!again.isRunning)
    }

    @Test("a failed spawn kills what the cgroup holds and takes the sandbox off the network; nothing is left live")
    func failedStart() async throws {
        let (driver, machine) = try await f.provisioned("broken", networkedDriver: true, networkedMachine: true)
        f.spawner.failNextSpawn(AtollError(.system, "clone3(): injected"))
        await #expect(throws: AtollError.self) { try await driver.start(machine) }
        let calls = f.recorder.calls
        let attach = try #require(calls.firstIndex(of: "network.attach 5"))
        let spawn = try #require(calls.firstIndex { $0.hasPrefix("spawn broken") })
        let kill = try #require(calls.lastIndex(of: "cgroup.killAll broken"))
        let detach = try #require(calls.firstIndex(of: "network.detach 5"))
        #expect(attach < spawn && spawn < kill && kill < detach, "\(calls)")
        #expect(calls[spawn].contains("network=true"))
    }

    @Test("stop: the cgroup is killed, PID 1 is waited for and reaped, the disk detaches, then the firewall entry goes")
    func stopOrder() async throws {
        // Started by one driver, stopped by another (as after a daemon restart): the second has
        // no handle of its own and takes one from the pid.
        let (starter, machine) = try await f.provisioned("stopme", networkedMachine: true)
        var plain = machine
        plain.network = nil
        let initProcess = try await starter.start(plain)
        f.recorder.reset()
        try await f.driver(networked: true).stop(machine, initProcess: initProcess)
        #expect(f.recorder.calls == ["cgroup.killAll stopme", "disk.waitDetached", "network.detach 5"])
        #expect(!initProcess.isRunning, "PID 1 is gone and reaped")
        #expect(kill(initProcess.pid, 0) != 0, "no zombie left")
    }

    @Test("destroy: kill, reap, remove the cgroup, wait for the disk, remove the directory")
    func destroyOrder() async throws {
        let (driver, machine) = try await f.provisioned("gone")
        let initProcess = try await driver.start(machine)
        f.recorder.reset()
        try await driver.destroy(machine)
        #expect(f.recorder.calls == ["cgroup.killAll gone", "cgroup.remove gone", "disk.waitDetached"])
        #expect(!initProcess.isRunning)
        #expect(!FileManager.default.fileExists(atPath: f.configuration.sandboxDirectory(machine.id)))
        #expect(!f.cgroups.exists("gone"))
    }

    @Test("resize: limits go to a live cgroup only; the disk grows to the new size")
    func resize() async throws {
        try await f.driver().updateLimits(try f.machine("grow"))
        #expect(f.recorder.calls.isEmpty, "no cgroup, nothing to update")
        let (driver, provisioned) = try await f.provisioned("grow")
        var machine = provisioned
        machine.resources.diskGiB = 5
        try await driver.growDisk(machine)
        #expect(f.recorder.calls == ["disk.grow 5GiB"])
    }
}
