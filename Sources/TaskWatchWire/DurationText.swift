/// Durations written the Prometheus way: `10ms`, `1.5s`, `2m`, `1h30m`, `1d`, `1w`, `1y`, `500us`,
/// `250ns`.
public enum DurationText {
    /// The units, largest first, with their lengths in nanoseconds. A compound duration such as `1h30m`
    /// names each unit at most once, in this order, as Prometheus requires; `y` is 365 days, as there.
    /// `us`, `µs` (micro sign) and `μs` (Greek mu) are one unit, as in Go.
    private static let units: [(names: [String], nanoseconds: UInt64)] = [
        (["y"], 365 * 86_400 * 1_000_000_000), (["w"], 7 * 86_400 * 1_000_000_000),
        (["d"], 86_400 * 1_000_000_000), (["h"], 3_600 * 1_000_000_000), (["m"], 60 * 1_000_000_000),
        (["s"], 1_000_000_000), (["ms"], 1_000_000), (["us", "µs", "μs"], 1_000), (["ns"], 1),
    ]

    /// The longest duration accepted: `Int64.max` nanoseconds (about 292 years), the range of Go's
    /// `time.Duration`, so that a parsed value fits a `Duration` or `Int64` and can be added to a
    /// monotonic clock reading without overflow.
    private static let maximumNanoseconds = UInt64(Int64.max)

    /// Parses a duration into nanoseconds; nil for anything else, including negative numbers, units out
    /// of order or given twice, and durations over `maximumNanoseconds`. Each part is a decimal number
    /// (`1`, `1.5`, `.5`) and a unit: `y`, `w`, `d`, `h`, `m`, `s`, `ms`, `us`, `ns`. Only zero may
    /// leave out the unit, as in Prometheus.
    public static func nanoseconds(_ text: String) -> UInt64? {
        if text == "0" { return 0 }
        let bytes = Array(text.utf8)
        var index = 0
        var total: UInt64 = 0
        // The index in `units` of the largest unit the next part may use.
        var nextUnit = 0
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        guard !bytes.isEmpty else { return nil }
        while index < bytes.count {
            // The number: digits, then optionally a point and more digits; at least one digit.
            var whole: UInt64 = 0
            var digits = 0
            while index < bytes.count, isDigit(bytes[index]) {
                let (tens, overflow) = whole.multipliedReportingOverflow(by: 10)
                let (sum, carry) = tens.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                guard !overflow, !carry else { return nil }
                whole = sum
                digits += 1
                index += 1
            }
            // The fraction as `fraction / scale`. Digits past what a UInt64 holds (19) are below a
            // nanosecond of any unit, and are read but ignored.
            var fraction: UInt64 = 0
            var scale: UInt64 = 1
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                while index < bytes.count, isDigit(bytes[index]) {
                    if scale <= UInt64.max / 10 {
                        fraction = fraction * 10 + UInt64(bytes[index] - UInt8(ascii: "0"))
                        scale *= 10
                    }
                    digits += 1
                    index += 1
                }
            }
            guard digits > 0 else { return nil }
            // The unit: everything up to the next number.
            let start = index
            while index < bytes.count, !isDigit(bytes[index]), bytes[index] != UInt8(ascii: ".") { index += 1 }
            let name = String(decoding: bytes[start..<index], as: UTF8.self)
            guard let unit = units.firstIndex(where: { $0.names.contains(name) }), unit >= nextUnit else {
                return nil
            }
            nextUnit = unit + 1
            let unitNanoseconds = units[unit].nanoseconds
            let (wholePart, overflow) = whole.multipliedReportingOverflow(by: unitNanoseconds)
            guard !overflow else { return nil }
            // fraction * unit / scale, exactly (in 128 bits), truncated to whole nanoseconds; below one
            // unit, as fraction < scale.
            let fractionPart = scale.dividingFullWidth(fraction.multipliedFullWidth(by: unitNanoseconds)).quotient
            let (part, carry) = wholePart.addingReportingOverflow(fractionPart)
            let (sum, carryOut) = total.addingReportingOverflow(part)
            guard !carry, !carryOut, sum <= maximumNanoseconds else { return nil }
            total = sum
        }
        return total
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
