import AtollStore
import Testing

@Suite("API key hashes: SHA-256 through swift-crypto")
struct SHA256Tests {
    @Test(
        "known answers (FIPS 180-4 examples and lengths around the padding boundary)",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            (String(repeating: "a", count: 1000), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
            // 55 bytes plus padding fill exactly one block; 56 need a second.
            (String(repeating: "x", count: 55), "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"),
        ])
    func vectors(input: String, expected: String) {
        #expect(KeyHash.hex(input.utf8) == expected)
    }
}
