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

    /// Clears the screen and moves the cursor home.
    static let clearScreen = "\u{1B}[H\u{1B}[2J"
    /// Returns to the start of the line and clears it.
    static let clearLine = "\r\u{1B}[2K"
}

/// Human-readable figures.
enum Format {
    static func bytes(_ value: Double) -> String {
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

    /// `value` with `digits` digits after the point, without Foundation's formatters.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf") }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (abs(value) * scale).rounded()
        let whole = Int(rounded / scale)
        let fraction = Int(rounded) - whole * Int(scale)
        let sign = value < 0 && rounded != 0 ? "-" : ""
        if digits == 0 { return "\(sign)\(whole)" }
        var fractionText = String(fraction)
        while fractionText.count < digits { fractionText = "0" + fractionText }
        return "\(sign)\(whole).\(fractionText)"
    }

    /// A count with a k/M suffix above ten thousand.
    static func count(_ value: Double) -> String {
        if abs(value) >= 10_000_000 { return fixed(value / 1_000_000, 1) + "M" }
        if abs(value) >= 10_000 { return fixed(value / 1_000, 1) + "k" }
        return value == value.rounded() ? String(Int(value)) : fixed(value, 1)
    }

    static func seconds(_ value: Double) -> String {
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
