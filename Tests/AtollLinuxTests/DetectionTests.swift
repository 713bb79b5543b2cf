import AtollCore
import Testing

@testable import AtollLinux

@Suite("mountinfo and cgroup layout detection")
struct DetectionTests {
    /// The hybrid layout of the build machines (v1 controllers, cgroup2 with hugetlb only).
    static let hybrid = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """

    @Test("a hybrid host uses the v1 hierarchies")
    func hybrid() throws {
        let layout = try CgroupLayout.detect(mounts: MountInfo.parse(Self.hybrid))
        #expect(
            layout
                == .legacy(hierarchies: [
                    "cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "memory": "/sys/fs/cgroup/memory",
                    "freezer": "/sys/fs/cgroup/freezer", "pids": "/sys/fs/cgroup/pids",
                ]))
    }

    @Test("a unified host uses cgroup v2")
    func unified() throws {
        let text = "25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"
        #expect(try CgroupLayout.detect(mounts: MountInfo.parse(text)) == .unified(root: "/sys/fs/cgroup"))
    }

    @Test("co-mounted v1 controllers share a mount point")
    func comounted() throws {
        let text = """
            30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
            31 25 0:27 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
            """
        guard case .legacy(let h) = try CgroupLayout.detect(mounts: MountInfo.parse(text)) else {
            Issue.record("not detected as v1")
            return
        }
        #expect(h["cpu"] == "/sys/fs/cgroup/cpu,cpuacct" && h["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct")
    }

    @Test("no cgroup mount is a clear error")
    func none() {
        #expect(throws: AtollError.self) { try CgroupLayout.detect(mounts: MountInfo.parse("22 1 0:5 / /proc rw - proc proc rw")) }
    }

    @Test("mountinfo fields, optional fields and octal escapes")
    func parse() throws {
        let line = #"36 35 98:0 /mnt1 /mnt\040with\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue"#
        let entry = try #require(MountInfo.parseLine(line))
        #expect(entry.mountID == 36 && entry.parentID == 35)
        #expect(entry.root == "/mnt1")
        #expect(entry.mountPoint == "/mnt with space")
        #expect(entry.fsType == "ext3")
        #expect(entry.source == "/dev/root")
        #expect(entry.superOptions == "rw,errors=continue")
        #expect(MountInfo.parseLine("garbage") == nil)
    }
}
