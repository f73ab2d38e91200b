/// Durations written the Prometheus way: `10ms`, `1.5s`, `2m`, `1h`, `500us`, `250ns`.
public enum DurationText {
    /// Parses a duration into nanoseconds; nil for anything else, including negative numbers. Only
    /// zero may leave out the unit, as in Prometheus.
    public static func nanoseconds(_ text: String) -> UInt64? {
        if text == "0" { return 0 }
        let units: [(String, Double)] = [
            ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3_600e9), ("d", 86_400e9),
        ]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // "ms" also ends in "s": only accept when what is left is a plain number.
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
                let value = Double(number), value.isFinite, value >= 0, value * scale < 1.8e19
            else { continue }
            return UInt64(value * scale)
        }
        return nil
    }

    /// Formats nanoseconds with the largest unit that keeps it whole, e.g. `10ms`.
    public static func format(nanoseconds: UInt64) -> String {
        for (suffix, scale) in [
            ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000),
        ]
        where nanoseconds >= UInt64(scale) && nanoseconds % UInt64(scale) == 0 {
            return "\(nanoseconds / UInt64(scale))\(suffix)"
        }
        return "\(nanoseconds)ns"
    }
}
