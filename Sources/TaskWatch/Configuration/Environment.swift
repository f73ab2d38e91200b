#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Reads the process environment without Foundation, so the client library does not pull it in.
enum Environment {
    static func current() -> [String: String] {
        var result: [String: String] = [:]
        var cursor = environ
        while let entry = cursor.pointee {
            let pair = String(cString: entry)
            if let equals = pair.firstIndex(of: "=") {
                result[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            cursor += 1
        }
        return result
    }

    /// Whether `TASKWATCH_DISABLED` asks for no instrumentation (`1`, `true` or `yes`).
    static func isDisabled(_ environment: [String: String]) -> Bool {
        guard let value = environment["TASKWATCH_DISABLED"]?.lowercased() else { return false }
        return value == "1" || value == "true" || value == "yes"
    }

    /// Parses `10ms`, `1s`, `500us`, `250µs`, `100ns`, `2m`; a bare number means milliseconds.
    /// Returns nil for anything else, and for zero or negative durations.
    static func parseDuration(_ text: String) -> Duration? {
        let trimmed = text.trimmingWhitespace()
        let units: [(String, Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60),
        ]
        var number = Substring(trimmed)
        var scale = 1e-3
        // Longest suffixes first, so "ms" is not read as "s".
        for (suffix, factor) in units.sorted(by: { $0.0.count > $1.0.count }) where trimmed.hasSuffix(suffix) {
            number = trimmed.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value > 0 else { return nil }
        let nanoseconds = value * scale * 1e9
        guard nanoseconds >= 1, nanoseconds < 1e15 else { return nil }
        return .nanoseconds(Int64(nanoseconds))
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let scalars = unicodeScalars.drop(while: { $0 == " " || $0 == "\t" })
        var text = String(scalars)
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}

/// Whether instrumentation is off at runtime (`TASKWATCH_DISABLED=1`), read once on first use.
let instrumentationDisabled: Bool = Environment.isDisabled(Environment.current())
