public import AtollCore
import Foundation
import Glibc

/// Keeps secrets out of what other processes can read about this one: `/proc/<pid>/cmdline`
/// shows the original argv strings and `/proc/<pid>/environ` the original environment block,
/// whatever the program does with its copies later. Both are overwritten in place.
public enum SecretScrubbing {
    /// Overwrites, in this process's own argv, the value of every flag in `flags`
    /// (`--flag VALUE` and `--flag=VALUE`) with `*`. Returns whether one was found.
    @discardableResult
    public static func scrubArguments(_ flags: Set<String>) -> Bool {
        let argc = Int(CommandLine.argc)
        let argv = CommandLine.unsafeArgv
        var found = false
        var i = 1
        while i < argc {
            guard let pointer = argv[i] else {
                i += 1
                continue
            }
            let argument = String(cString: pointer)
            if flags.contains(argument), i + 1 < argc, let value = argv[i + 1] {
                blank(value, from: 0)
                found = true
                i += 2
                continue
            }
            if let eq = argument.firstIndex(of: "="), flags.contains(String(argument[..<eq])) {
                blank(pointer, from: argument.utf8.distance(from: argument.utf8.startIndex, to: eq) + 1)
                found = true
            }
            i += 1
        }
        return found
    }

    /// The value of environment variable `name`, removed from the environment and blanked in the
    /// process's initial environment block. Nil when it is not set (or empty).
    public static func takeEnvironment(_ name: String) -> String? {
        guard let pointer = getenv(name) else { return nil }
        let value = String(cString: pointer)
        blank(pointer, from: 0)
        unsetenv(name)
        return value.isEmpty ? nil : value
    }

    /// The key in the file `path`, white space around it ignored.
    public static func readKey(file path: String) throws(AtollError) -> String {
        let key: String
        do {
            key = try KernelFile.read(path, limit: 4096).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw AtollError(.invalidArgument, "--api-key-file: cannot read \(path): \(error.message)")
        }
        guard !key.isEmpty else { throw AtollError(.invalidArgument, "--api-key-file: \(path) holds no key") }
        return key
    }

    /// Blanks `--api-key`'s value in this process's argv and returns the error that refuses it: a
    /// key on a command line can be read by every user of the host (`ps`, /proc/<pid>/cmdline).
    public static func refuseKeyArgument(environmentVariable: String) -> AtollError {
        scrubArguments(["--api-key"])
        return AtollError(
            .invalidArgument,
            "--api-key puts the key on the command line, where every user of this host can read it: use --api-key-file FILE or \(environmentVariable)")
    }

    static func blank(_ string: UnsafeMutablePointer<CChar>, from offset: Int) {
        let length = strlen(string)
        guard length > offset else { return }
        memset(string + offset, Int32(UInt8(ascii: "*")), length - offset)
    }
}
