import Glibc

/// Output helpers that need no Foundation: unbuffered writes and TTY detection.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    static func write(_ text: String, to fd: Int32 = STDOUT_FILENO) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }

    static func line(_ text: String, to fd: Int32 = STDOUT_FILENO) { write(text + "\n", to: fd) }

    /// The width of the terminal on `fd`, or nil when it is not one (or says 0).
    static func columns(_ fd: Int32) -> Int? {
        var size = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }

    /// The height of the terminal on `fd` in lines, or nil when it is not one (or says 0).
    static func rows(_ fd: Int32) -> Int? {
        var size = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return nil }
        return Int(size.ws_row)
    }

    /// `text` cut to a screen of `columns` by `rows` (either nil: no limit): each line to the width,
    /// and, past the height, the last line that fits replaced by how many were left out. A line that
    /// wraps pushes the ones below it down, and a text taller than the screen scrolls its top away.
    static func fit(_ text: String, columns: Int?, rows: Int?) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let rows, lines.count > rows {
            let kept = max(0, rows - 1)
            let left = lines.count - kept
            lines = Array(lines.prefix(kept)) + ["… \(left) more rows (--limit, or a taller terminal)"]
        }
        guard let columns else { return lines.joined(separator: "\n") }
        return lines.map { String($0.prefix(columns)) }.joined(separator: "\n")
    }

    /// Clears the screen and moves the cursor home.
    static let clearScreen = "\u{1B}[H\u{1B}[2J"
    /// Returns to the start of the line and clears it.
    static let clearLine = "\r\u{1B}[2K"
}

/// Human-readable figures. Every function takes any `Double`: the values come from `/metrics`, where
/// any local client can put any number, so none may trap (a conversion to `Int` out of range does).
enum Format {
    static func bytes(_ value: Double) -> String {
        guard value.isFinite else { return special(value) }
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var scaled = value
        var unit = 0
        while abs(scaled) >= 1_024, unit < units.count - 1 {
            scaled /= 1_024
            unit += 1
        }
        return unit == 0 ? "\(Int(scaled)) B" : "\(fixed(scaled, 1)) \(units[unit])"
    }

    static func bytes(_ value: UInt64) -> String { bytes(Double(value)) }

    /// Beyond this, `fixed` switches to scientific notation: the digits would not be exact, and the
    /// whole part would not fit an `Int`.
    static let largestFixed = 1e15

    /// `value` with `digits` digits after the point, without Foundation's formatters; scientific, e.g.
    /// `1.0e25`, from `largestFixed` on.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return special(value) }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (abs(value) * scale).rounded()
        guard rounded < largestFixed else { return scientific(value, max(1, digits)) }
        let whole = Int(rounded / scale)
        let fraction = Int(rounded) - whole * Int(scale)
        let sign = value < 0 && rounded != 0 ? "-" : ""
        if digits == 0 { return "\(sign)\(whole)" }
        var fractionText = String(fraction)
        while fractionText.count < digits { fractionText = "0" + fractionText }
        return "\(sign)\(whole).\(fractionText)"
    }

    /// `value` as a mantissa with `digits` digits after the point and a power of ten, e.g. `-2.5e30`.
    static func scientific(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return special(value) }
        guard value != 0 else { return fixed(0, digits) + "e0" }
        var exponent = Int(log10(abs(value)).rounded(.down))
        var mantissa = abs(value) / pow(10, Double(exponent))
        // Rounding may carry into a new digit (9.96 to 10.0).
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        if (mantissa * scale).rounded() >= 10 * scale {
            mantissa /= 10
            exponent += 1
        }
        return (value < 0 ? "-" : "") + fixed(mantissa, digits) + "e\(exponent)"
    }

    /// NaN and the infinities as Prometheus writes them.
    static func special(_ value: Double) -> String { value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf") }

    /// A count with a k/M suffix above ten thousand, scientific from a billion millions on.
    static func count(_ value: Double) -> String {
        guard value.isFinite else { return special(value) }
        if abs(value) >= largestFixed { return scientific(value, 1) }
        if abs(value) >= 10_000_000 { return fixed(value / 1_000_000, 1) + "M" }
        if abs(value) >= 10_000 { return fixed(value / 1_000, 1) + "k" }
        return value == value.rounded() ? String(Int(value)) : fixed(value, 1)
    }

    static func seconds(_ value: Double) -> String {
        guard value.isFinite else { return special(value) }
        if value < 0.001 { return fixed(value * 1e6, 0) + "µs" }
        if value < 1 { return fixed(value * 1e3, 1) + "ms" }
        return fixed(value, 2) + "s"
    }

    /// An age: tenths of a second below 10 s, then whole seconds, minutes, hours, days (each rounded
    /// down, so a report is never shown younger than it is), e.g. `0.4s`, `12s`, `3m`.
    static func age(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 1e15 else { return "?" }
        if seconds < 10 { return fixed((max(0, seconds) * 10).rounded(.down) / 10, 1) + "s" }
        for (unit, size) in [("d", 86_400.0), ("h", 3_600.0), ("m", 60.0)] where seconds >= size {
            return "\(Int(seconds / size))\(unit)"
        }
        return "\(Int(seconds))s"
    }

    static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let count = text.count
        guard count < width else { return text }
        let fill = String(repeating: " ", count: width - count)
        return right ? fill + text : text + fill
    }
}
