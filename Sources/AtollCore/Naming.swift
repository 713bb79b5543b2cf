/// Validation of user-chosen names and labels.
public enum Naming {
    /// A sandbox name: 1–63 characters of letters, digits, '-', '_' and '.', starting with a
    /// letter or digit. It is shown in lists and resolves in place of the id, so it has no
    /// slashes, spaces or control characters.
    public static func validateName(_ name: String) throws(AtollError) {
        guard !name.isEmpty, name.utf8.count <= 63 else {
            throw AtollError(.invalidArgument, "name must be 1 to 63 characters, got \(name.utf8.count)")
        }
        for (i, c) in name.utf8.enumerated() {
            let alnum = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
            guard alnum || (i > 0 && (c == 45 || c == 95 || c == 46)) else {
                throw AtollError(
                    .invalidArgument, "invalid name \"\(name.prefix(64))\": use letters, digits, '-', '_' and '.', starting with a letter or digit")
            }
        }
    }

    /// Most labels a sandbox may carry, and their sizes.
    public static let maximumLabels = 64
    public static let maximumLabelKeyLength = 256
    public static let maximumLabelValueLength = 1024

    /// Labels are stored exactly as given; they only have to be reasonable in size and free of
    /// control characters.
    public static func validateLabels(_ labels: [String: String]) throws(AtollError) {
        guard labels.count <= maximumLabels else {
            throw AtollError(.invalidArgument, "labels: \(labels.count) labels; at most \(maximumLabels) are allowed")
        }
        for (key, value) in labels {
            guard !key.isEmpty, key.utf8.count <= maximumLabelKeyLength else {
                throw AtollError(.invalidArgument, "labels: keys must be 1 to \(maximumLabelKeyLength) bytes (\"\(key.prefix(64))\")")
            }
            guard value.utf8.count <= maximumLabelValueLength else {
                throw AtollError(.invalidArgument, "labels: the value of \"\(key.prefix(64))\" is longer than \(maximumLabelValueLength) bytes")
            }
            guard !key.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 }),
                !value.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 })
            else {
                throw AtollError(.invalidArgument, "labels: \"\(key.prefix(64))\" contains a control character")
            }
        }
    }
}
