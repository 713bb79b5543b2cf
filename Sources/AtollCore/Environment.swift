/// Validation of environment variables passed into a sandbox.
public enum EnvironmentValidation {
    /// Checks that every key matches `^[A-Za-z_][A-Za-z0-9_]*$` (as Daytona's toolbox requires) and
    /// that no key or value contains a NUL byte. The error names the offending key.
    public static func validate(_ env: [String: String], field: String = "env") throws(AtollError) {
        for (key, value) in env {
            guard isValidKey(key) else {
                throw AtollError(
                    .invalidArgument, "\(field): invalid variable name \"\(key.prefix(64))\": use letters, digits and '_', not starting with a digit")
            }
            guard !value.utf8.contains(0) else {
                throw AtollError(.invalidArgument, "\(field): the value of \(key) contains a NUL byte")
            }
        }
    }

    public static func isValidKey(_ key: String) -> Bool {
        guard let first = key.utf8.first, key.utf8.count <= 256 else { return false }
        func isLetter(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
        guard isLetter(first) else { return false }
        return key.utf8.allSatisfy { isLetter($0) || ($0 >= 48 && $0 <= 57) }
    }
}
