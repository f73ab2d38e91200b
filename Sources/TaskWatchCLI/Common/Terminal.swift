import Glibc
import Synchronization

/// Output helpers that need no Foundation: unbuffered writes and TTY detection.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Writes all of `text` to `fd`. A failed write to standard output ends the process (`outputFailed`);
    /// one to standard error is let go, as there is nowhere left to say it.
    static func write(_ text: String, to fd: Int32 = STDOUT_FILENO) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                let error = errno
                if error == EINTR { continue }
                if error == EAGAIN || error == EWOULDBLOCK {
                    // A descriptor left non-blocking by whoever shares it: wait until it takes more.
                    var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&descriptor, 1, -1)
                    continue
                }
                guard fd == STDOUT_FILENO else { return }
                outputFailed(error)
            }
            offset += written
        }
    }

    /// The exit status of a failed write to standard output: EX_IOERR of sysexits.h, as bad arguments
    /// exit with EX_USAGE (64), so that it is not taken for a status a command gives a meaning (check's
    /// 1 to 3).
    static let outputFailureStatus: Int32 = 74

    private static let failing = Atomic<Bool>(false)

    /// Says on stderr that standard output failed with `error` (ENOSPC on a full disk, EIO, EPIPE when
    /// SIGPIPE is ignored) and exits with `outputFailureStatus`. A command that went on after a failed
    /// write printed nothing and exited 0, and a script took the missing report for a success. Only
    /// the first failing thread exits; any other waits for the exit to end it.
    static func outputFailed(_ error: Int32) -> Never {
        if failing.exchange(true, ordering: .sequentiallyConsistent) {
            while true { pause() }
        }
        write("taskwatch: cannot write to standard output: \(String(cString: strerror(error)))\n", to: STDERR_FILENO)
        exit(outputFailureStatus)
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
        return lines.map { prefix($0, columns: columns) }.joined(separator: "\n")
    }

    /// The longest start of `text` that takes at most `columns` columns (`width`): a wide character that
    /// would straddle the edge is left out whole. Cut by characters, a line of CJK or emoji names took
    /// up to twice the width and wrapped.
    static func prefix(_ text: String, columns: Int) -> String {
        var used = 0
        var end = text.startIndex
        for index in text.indices {
            used += width(text[index])
            if used > columns { break }
            end = text.index(after: index)
        }
        return String(text[..<end])
    }

    /// The columns `text` takes on a terminal: the sum of `width` over its characters.
    static func width(_ text: some StringProtocol) -> Int {
        text.reduce(0) { $0 + width($1) }
    }

    /// The columns one character (a grapheme cluster) takes on a terminal. An approximation of what
    /// terminals do (wcwidth(3), Unicode's East Asian Width of UAX #11, and emoji presentation of
    /// UTS #51), from the properties the standard library has and a table of the wide blocks:
    /// - an emoji drawn as one (Emoji_Presentation, like 😀 and flags, or an emoji followed by U+FE0F,
    ///   like ❤️ and keycaps), with whatever modifiers and ZWJ sequence follow it: 2;
    /// - otherwise the sum over its scalars: East Asian Wide and Fullwidth (`wideRanges`) 2; combining
    ///   marks (Mn, Me), format characters (Cf: ZWJ, zero-width space), controls and the Hangul vowel and
    ///   final jamo that join a syllable: 0; any other 1.
    /// Left out: Ambiguous characters (Greek, Cyrillic, box drawing) count 1, as outside a CJK locale;
    /// Indic spacing marks count 1 each, as some terminals draw them and others not; the wide blocks
    /// are the main ones, not every scattered Wide code point (most of those are emoji, caught above);
    /// and a terminal whose Unicode tables are older than the emoji draws it one column wide.
    static func width(_ character: Character) -> Int {
        let scalars = character.unicodeScalars
        guard let first = scalars.first else { return 0 }
        if !scalars.contains("\u{FE0E}")
            && (first.properties.isEmojiPresentation || (first.properties.isEmoji && scalars.contains("\u{FE0F}")))
        {
            return 2
        }
        return scalars.reduce(0) { $0 + width($1) }
    }

    private static func width(_ scalar: Unicode.Scalar) -> Int {
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format, .control: return 0
        default: break
        }
        let value = scalar.value
        if value < 0x1100 { return 1 }
        if (0x1160...0x11FF).contains(value) || (0xD7B0...0xD7FF).contains(value) { return 0 }
        return wideRanges.contains { $0.contains(value) } ? 2 : 1
    }

    /// The blocks whose characters are East Asian Wide or Fullwidth: Hangul leading jamo, CJK radicals
    /// and punctuation, kana, Bopomofo, CJK ideographs and their extensions, Yi, Hangul syllables,
    /// CJK compatibility, vertical and small forms, fullwidth forms, Tangut, kana supplements, the
    /// enclosed ideographic supplement, and the supplementary and tertiary ideographic planes.
    static let wideRanges: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x2329...0x232A, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF,
        0xA000...0xA4CF, 0xA960...0xA97F, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F,
        0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x16FE0...0x16FE4, 0x17000...0x18CFF, 0x1AFF0...0x1B2FF,
        0x1F200...0x1F2FF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
    ]

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

    /// `text` filled with spaces to `width` columns (`Terminal.width`, so a wide name keeps the columns
    /// after it aligned), on the left when `right`.
    static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let columns = Terminal.width(text)
        guard columns < width else { return text }
        let fill = String(repeating: " ", count: width - columns)
        return right ? fill + text : text + fill
    }
}
