import AtollCore
import AtollLinux
import Foundation
import Glibc

// atoll-cgroup-conformance — the cgroup backend protocol against the running kernel.
//
//   atoll-cgroup-conformance list
//   atoll-cgroup-conformance run [--group-name NAME] [CHECK...]   (root; every check by default)
//   atoll-cgroup-conformance guest                                (as PID 1 of a test VM, whatever the arguments:
//                                                                  mounts, runs every check, powers off)
//   atoll-cgroup-conformance helper MODE [ARG]                    (started by the checks inside a group)
//
// `run` prints "PASS name (seconds)" or "FAIL name: reason" per check and a summary line, and
// exits 1 if any check failed.

let arguments = Array(CommandLine.arguments.dropFirst())

/// This executable's path, for the helpers.
func ownPath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
}

func runChecks(_ names: [String], groupName: String) -> Int32 {
    let selected = names.isEmpty ? Conformance.checks : Conformance.checks.filter { names.contains($0.name) }
    let unknown = names.filter { name in !Conformance.checks.contains { $0.name == name } }
    guard unknown.isEmpty else {
        print("unknown check(s): \(unknown.joined(separator: ", ")); see `list`")
        return 2
    }
    let manager: any CgroupManaging
    do {
        manager = try CgroupLayout.hostManager(groupName: groupName)
    } catch {
        print("FAIL setup: \(error)")
        return 1
    }
    print("cgroup \(manager.version.rawValue) backend, kernel \(kernelRelease()), group \(groupName)")
    let conformance = Conformance(manager: manager, executable: ownPath())
    var failed = 0
    for check in selected {
        let start = Monotonic.now()
        do {
            try check.run(conformance)
            print("PASS \(check.name) (\(String(format: "%.1f", Monotonic.now() - start)) s): \(check.summary)")
        } catch {
            failed += 1
            print("FAIL \(check.name): \(error)")
        }
    }
    manager.removeTopLevelIfEmpty()
    print("ATOLL-CONFORMANCE \(manager.version.rawValue): \(selected.count - failed) passed, \(failed) failed")
    return failed == 0 ? 0 : 1
}

func kernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

// As PID 1 (the /init of the test VM's initramfs) there is only one thing to do.
switch getpid() == 1 ? "guest" : arguments.first {
case "list":
    for check in Conformance.checks { print("\(check.name)\t\(check.summary)") }
case "run":
    var rest = Array(arguments.dropFirst())
    var groupName = "atoll-conformance-\(getpid())"
    if let index = rest.firstIndex(of: "--group-name"), index + 1 < rest.count {
        groupName = rest[index + 1]
        rest.removeSubrange(index...index + 1)
    }
    exit(runChecks(rest, groupName: groupName))
case "guest":
    exit(Guest.run())
case "helper":
    Helper.run(Array(arguments.dropFirst()))
default:
    print("usage: atoll-cgroup-conformance list | run [--group-name NAME] [CHECK...] | guest")
    exit(2)
}
