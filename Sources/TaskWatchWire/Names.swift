/// Prometheus naming rules, shared by the client (which sanitizes) and the daemon (which validates).
public enum Names {
    /// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    public static func isValidMetricName(_ name: String) -> Bool {
        isValid(name, allowColon: true)
    }

    /// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*` and does not start with the reserved `__`.
    public static func isValidLabelName(_ name: String) -> Bool {
        isValid(name, allowColon: false) && !name.utf8.starts(with: "__".utf8)
    }

    /// Turns any string into a valid metric name: invalid characters become `_`, and a leading digit
    /// gets a `_` in front. An empty string becomes `_`.
    public static func sanitizeMetricName(_ name: String) -> String {
        sanitize(name, allowColon: true)
    }

    /// Turns any string into a valid label name, as `sanitizeMetricName` does, and avoids the `__` prefix.
    public static func sanitizeLabelName(_ name: String) -> String {
        var result = sanitize(name, allowColon: false)
        while result.utf8.starts(with: "__".utf8) { result.removeFirst() }
        return result.isEmpty ? "_" : result
    }

    private static func isWordByte(_ byte: UInt8, allowColon: Bool) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
            true
        case UInt8(ascii: ":"): allowColon
        default: false
        }
    }

    private static func isValid(_ name: String, allowColon: Bool) -> Bool {
        var utf8 = name.utf8.makeIterator()
        guard let first = utf8.next(), isWordByte(first, allowColon: allowColon),
            !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
        else { return false }
        while let byte = utf8.next() {
            if !isWordByte(byte, allowColon: allowColon) { return false }
        }
        return true
    }

    private static func sanitize(_ name: String, allowColon: Bool) -> String {
        if isValid(name, allowColon: allowColon) { return name }
        var bytes: [UInt8] = []
        for byte in name.utf8 {
            // A multi-byte character turns into one `_` per byte; collapsing them is not worth the code.
            bytes.append(isWordByte(byte, allowColon: allowColon) ? byte : UInt8(ascii: "_"))
        }
        if let first = bytes.first, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) {
            bytes.insert(UInt8(ascii: "_"), at: 0)
        }
        if bytes.isEmpty { bytes = [UInt8(ascii: "_")] }
        return String(decoding: bytes, as: UTF8.self)
    }
}
