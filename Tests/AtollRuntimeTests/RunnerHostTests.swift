import AtollCore
import AtollLinux
import AtollRuntime
import AtollSandbox
import AtollTestSupport
import Foundation
import Glibc
import Testing

extension SandboxTests {
    /// The runner with the real driver: archive round trips, resize, recover, ephemeral
    /// sandboxes and the stop-archive-start race.
    @Suite("Runner on the host")
    struct RunnerHostTests {
        /// Everything about the sandbox's files that an archive must keep, as one text.
        static let listing = """
            cd / && find /data /etc /home /tmp -xdev -printf '%p %U %G %m %y %s %l\\n' | sort
            sha256sum /data/big.bin | cut -d' ' -f1
            du -k /data/sparse.bin | cut -f1
            python3 -c "import os; print(os.getxattr('/data/owned.txt', 'user.atoll'))"
            test -e /etc/debian_version && echo debian_version present || echo debian_version absent
            ls -A /etc/skel
            stat -c '%h' /data/owned.txt
            """

        @Test("archive and restore keep every file, owner, mode, link, xattr, whiteout, sparse file and a 200 MB file")
        func archiveRoundTrip() async throws {
            try await withSandbox(CreateParameters(resources: Resources(cpu: 1, memoryGiB: 1, diskGiB: 2))) { manager, sandbox in
                let id = sandbox.id.rawValue
                let setup = try await manager.sh(
                    sandbox.id,
                    """
                    set -e
                    mkdir -p /data/sub && cd /data
                    head -c 200000000 /dev/urandom > big.bin
                    truncate -s 1G sparse.bin && echo tail >> sparse.bin
                    echo hello > owned.txt && chown 1234:5678 owned.txt && chmod 0640 owned.txt
                    python3 -c "import os; os.setxattr('/data/owned.txt', 'user.atoll', b'kept')"
                    mkdir -m 2751 setgid-dir && chown sandbox:sandbox setgid-dir
                    ln -s /etc/hostname abs-link && ln -s owned.txt rel-link && ln owned.txt hard-link
                    mkfifo fifo && touch sub/empty && chmod 4755 sub/empty
                    rm /etc/debian_version
                    rm -rf /etc/skel && mkdir /etc/skel && echo only > /etc/skel/only-file
                    echo in-tmp > /tmp/t.txt && echo home > /home/sandbox/h.txt
                    """, user: "root", timeout: 120)
                #expect(setup.exitCode == 0, "\(setup.stderrText)")
                let before = try await manager.sh(sandbox.id, Self.listing, user: "root")
                #expect(before.exitCode == 0, "\(before.stderrText)")
                #expect(before.stdoutText.contains("debian_version absent") && before.stdoutText.contains("only-file"))

                _ = try await manager.stop(id)
                #expect(try await manager.archive(id).state == .archiving)
                try await manager.waitForBackgroundWork(id)
                let archived = try await manager.get(id)
                #expect(archived.state == .archived, "\(archived.errorReason ?? "")")
                #expect(!KernelFile.exists(manager.diskPath(sandbox)), "the disk is freed")
                let archive = manager.configuration.driver.archivePath(sandbox.id)
                #expect(KernelFile.exists(archive))
                #expect(
                    (archived.archiveBytes ?? 0) > 200_000_000 && (archived.archiveBytes ?? .max) < 210_000_000,
                    "random data does not compress; the sparse gigabyte costs nothing")

                let restored = try await manager.start(id)
                #expect(restored.state == .started)
                #expect(!KernelFile.exists(archive), "the archive is removed once the sandbox runs again")
                let after = try await manager.sh(sandbox.id, Self.listing, user: "root")
                #expect(after.stdoutText == before.stdoutText)
                #expect(try await manager.history(id).map(\.toState).suffix(6) == ["stopping", "stopped", "archiving", "archived", "restoring", "started"])
            }
        }

        @Test("resize: CPU and memory live while started, the disk while stopped")
        func resize() async throws {
            try await withSandbox { manager, sandbox in
                let id = sandbox.id.rawValue
                _ = try await manager.resize(id, cpu: 2, memoryGiB: 2)
                let dirs = manager.hostDriver.cgroups.directories(id)
                if manager.hostDriver.cgroups.version == .v1 {
                    let cpu = dirs.first { $0.contains("/cpu/") || $0.contains("/cpu,") }!
                    #expect(try KernelFile.read("\(cpu)/cpu.cfs_quota_us") == "200000\n")
                    let memory = dirs.first { $0.contains("/memory/") }!
                    #expect(try KernelFile.read("\(memory)/memory.limit_in_bytes") == "\(2 << 30)\n")
                } else {
                    #expect(try KernelFile.read("\(dirs[0])/cpu.max") == "200000 100000\n")
                }
                await expectError(.conflict, containing: "only be resized while stopped") { try await manager.resize(id, diskGiB: 4) }
                _ = try await manager.sh(sandbox.id, "echo kept > ~/kept")
                _ = try await manager.stop(id)
                let stopped = try await manager.resize(id, cpu: 1, diskGiB: 4)
                #expect(stopped.resources == Resources(cpu: 1, memoryGiB: 2, diskGiB: 4))
                _ = try await manager.start(id)
                let df = try await manager.sh(sandbox.id, "df -B1M --output=size /tmp | tail -1; cat ~/kept")
                let lines = df.stdoutText.split(separator: "\n")
                #expect((Int(lines.first?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0) > 3900)
                #expect(lines.last == "kept")
            }
        }

        @Test("a failed archive leaves a recoverable error; recover brings the sandbox back with its files")
        func recover() async throws {
            try await withSandbox { manager, sandbox in
                let id = sandbox.id.rawValue
                _ = try await manager.sh(sandbox.id, "echo precious > ~/file")
                _ = try await manager.stop(id)
                // Make the object store unusable: its directory becomes a file.
                let store = manager.configuration.driver.archiveDirectory
                try FileManager.default.removeItem(atPath: store)
                try "not a directory".write(toFile: store, atomically: true, encoding: .utf8)
                _ = try await manager.archive(id)
                try await manager.waitForBackgroundWork(id)
                let failed = try await manager.get(id)
                #expect(failed.state == .error && failed.recoverable, "\(failed)")
                #expect(failed.errorReason?.contains("archive helper failed") == true, "\(failed.errorReason ?? "")")
                try FileManager.default.removeItem(atPath: store)
                try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
                #expect(try await manager.recover(id).state == .started)
                #expect(try await manager.sh(sandbox.id, "cat ~/file").stdoutText == "precious\n")
            }
        }

        @Test("deleting an archived sandbox removes its archive")
        func deleteArchived() async throws {
            try await withSandbox { manager, sandbox in
                let id = sandbox.id.rawValue
                _ = try await manager.stop(id)
                _ = try await manager.archive(id)
                try await manager.waitForBackgroundWork(id)
                let archive = manager.configuration.driver.archivePath(sandbox.id)
                #expect(KernelFile.exists(archive))
                #expect(try await manager.delete(id).state == .destroyed)
                #expect(!KernelFile.exists(archive))
                #expect(!KernelFile.exists(manager.configuration.driver.sandboxDirectory(sandbox.id)))
            }
        }

        @Test("an ephemeral sandbox is gone, with everything of it, once it stops")
        func ephemeral() async throws {
            try await withTestRuntime { manager in
                let sandbox = try await manager.create(CreateParameters(ephemeral: true))
                let dirs = manager.hostDriver.cgroups.directories(sandbox.id.rawValue)
                #expect(try await manager.stop(sandbox.id.rawValue).state == .destroyed)
                #expect(dirs.allSatisfy { !KernelFile.exists($0) })
                #expect(!KernelFile.exists(manager.configuration.driver.sandboxDirectory(sandbox.id)))
                #expect(try await manager.list().isEmpty)
            }
        }

        @Test("stop, archive without waiting, start: it starts, with its files")
        func stopArchiveStart() async throws {
            try await withSandbox { manager, sandbox in
                let id = sandbox.id.rawValue
                _ = try await manager.sh(sandbox.id, "head -c 50000000 /dev/urandom > ~/blob; sha256sum ~/blob > ~/blob.sha")
                _ = try await manager.stop(id)
                _ = try await manager.archive(id)
                let started = try await manager.start(id)
                #expect(started.state == .started)
                #expect(try await manager.sh(sandbox.id, "sha256sum -c ~/blob.sha").exitCode == 0)
                let archives = try FileManager.default.contentsOfDirectory(atPath: manager.configuration.driver.archiveDirectory)
                #expect(archives.isEmpty, "no archive or temporary file is left: \(archives)")
            }
        }
    }
}
