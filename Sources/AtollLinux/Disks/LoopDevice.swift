import AtollCore
import CRuntime
import Foundation
import Glibc

/// A disk image attached to a loop device with autoclear: the kernel detaches the device by
/// itself once the last mount of it is gone, so a sandbox whose processes all died (or a daemon
/// that crashed) cannot leave a loop device behind.
public struct LoopAttachment: Sendable {
    /// `N` of `/dev/loopN`.
    public let index: Int32
    /// Holds the device until the sandbox has mounted it; close right after spawning.
    public let handle: OwnedFD

    public var devicePath: String { "/dev/loop\(index)" }

    /// Attaches `image` to a free loop device.
    public static func attach(_ image: String) throws -> LoopAttachment {
        var index: Int32 = -1
        var fd: Int32 = -1
        var failure = atoll_error()
        guard atoll_loop_attach(image, &index, &fd, &failure) == 0 else {
            throw SystemError.error(failure)
        }
        return LoopAttachment(index: index, handle: OwnedFD(fd))
    }

    /// The image a loop device is bound to right now, or nil if it is free.
    public static func backingFile(index: Int32) -> String? {
        guard let text = try? KernelFile.read("/sys/block/loop\(index)/loop/backing_file") else { return nil }
        let path = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return path.isEmpty ? nil : path
    }

    /// Loop devices bound to `image` now.
    public static func devices(backing image: String) -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.compactMap { name -> Int32? in
            guard name.hasPrefix("loop"), let n = Int32(name.dropFirst(4)) else { return nil }
            return backingFile(index: n) == image ? n : nil
        }
    }

    /// Waits until no loop device is bound to `image` (autoclear runs once the sandbox's mount
    /// namespace is torn down, shortly after its last process exits).
    public static func waitDetached(image: String, timeout: Double = 5) throws {
        let detached = Poll.until(timeout: timeout) { devices(backing: image).isEmpty }
        guard detached else {
            let devs = devices(backing: image).map { "/dev/loop\($0)" }.joined(separator: ", ")
            throw AtollError(.system, "\(devs) still bound to \(image) \(Int(timeout)) s after the sandbox stopped")
        }
    }
}
