#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Reads the process environment without Foundation, so the client library does not pull it in.
///
/// Values are read strictly and the same way for every variable: surrounding ASCII whitespace is
/// ignored, an empty value is as good as none, and anything else that is not exactly one of the forms
/// below is ignored. `TaskWatch.start()` says so once, one line on standard error per value, with what
/// it uses instead (`EnvironmentNotice`); nothing is ever said on a hot path.
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

    /// `TASKWATCH_DISABLED`: `1`, `true`, `yes` or `on` (any case) disable instrumentation; `0`, `false`,
    /// `no`, `off` or nothing leave it on, and so does any other value, with a notice.
    static func disabledSetting(_ environment: [String: String]) -> (disabled: Bool, notice: EnvironmentNotice?) {
        let variable = "TASKWATCH_DISABLED"
        guard let raw = environment[variable] else { return (false, nil) }
        switch raw.trimmingASCIIWhitespace().lowercased() {
        case "1", "true", "yes", "on": return (true, nil)
        case "", "0", "false", "no", "off": return (false, nil)
        default:
            return (false, EnvironmentNotice(variable, raw, "is not one of 1, true, yes, on, 0, false, no, off"))
        }
    }

    /// Whether `TASKWATCH_DISABLED` asks for no instrumentation (see `disabledSetting`).
    static func isDisabled(_ environment: [String: String]) -> Bool {
        disabledSetting(environment).disabled
    }

    /// What a duration's text comes to.
    enum DurationReading: Equatable {
        /// Written correctly and within `Configuration.durationRange`.
        case valid(Duration)
        /// Written correctly but outside the range: the nearest bound, and which it is.
        case clamped(Duration, String)
        /// Not a duration as `parseDuration` documents it.
        case malformed
    }

    /// The units of a duration and their length in nanoseconds, longest suffixes first.
    private static let units: [(suffix: String, nanoseconds: Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3_600e9),
    ]

    /// Reads a duration: decimal digits, optionally a point and more digits, then a unit (`ns`, `us` or
    /// `µs`, `ms`, `s`, `m`, `h`, lower case, right after the number) or none, which means milliseconds:
    /// `10ms`, `1.5s`, `250µs`, `2m`, `25`. Surrounding whitespace is ignored. No sign, exponent,
    /// hexadecimal, `nan` or `inf`, no space or comma inside. A value outside
    /// `Configuration.durationRange` (1 ns to just under 10^15 ns, about 11.5 days; zero included) is
    /// clamped to it, as a duration set in code is; whole nanoseconds, rounded down.
    static func readDuration(_ text: String) -> DurationReading {
        let trimmed = Substring(text.trimmingASCIIWhitespace())
        var number = trimmed
        var scale = 1e6
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.nanoseconds
            break
        }
        // Digits, or digits, a point and digits: nothing else, so that `Double` reads no sign, exponent,
        // hexadecimal, `nan` or `inf`. Too many digits for a `Double` read as infinity, and are clamped.
        let isDigit: (UInt8) -> Bool = { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(isDigit) }), let value = Double(number)
        else { return .malformed }
        let nanoseconds = value * scale
        let range = Configuration.durationRange
        let lowest = Double(range.lowerBound.nanoseconds)
        let highest = Double(range.upperBound.nanoseconds)
        if nanoseconds < lowest {
            return .clamped(range.lowerBound, "is below the shortest interval, \(format(range.lowerBound))")
        }
        if nanoseconds > highest {
            return .clamped(range.upperBound, "is above the longest interval, \(format(range.upperBound))")
        }
        return .valid(.nanoseconds(Int64(nanoseconds.rounded(.down))))
    }

    /// The duration `text` stands for (see `readDuration`), clamped to the range; nil when it is not one.
    static func parseDuration(_ text: String) -> Duration? {
        switch readDuration(text) {
        case .valid(let duration), .clamped(let duration, _): duration
        case .malformed: nil
        }
    }

    /// The shortest report interval the reporter keeps (`Reporter.init`).
    static let shortestReport: Duration = .microseconds(100)

    /// `TASKWATCH_INTERVAL`: the interval to use, or nil for the profile's, and a notice when the value
    /// was not taken as written.
    static func interval(_ environment: [String: String]) -> (interval: Duration?, notice: EnvironmentNotice?) {
        let variable = "TASKWATCH_INTERVAL"
        guard let raw = environment[variable], !raw.trimmingASCIIWhitespace().isEmpty else { return (nil, nil) }
        // Digits all zero asks for no interval at all, not the shortest: the profile's is used.
        let digits = raw.unicodeScalars.filter { ("0"..."9").contains($0) }
        let reading = readDuration(raw)
        if reading != .malformed, !digits.isEmpty, digits.allSatisfy({ $0 == "0" }) {
            return (nil, EnvironmentNotice(variable, raw, "is zero"))
        }
        switch reading {
        case .valid(let duration) where duration < Self.shortestReport,
            .clamped(let duration, _) where duration < Self.shortestReport:
            // The reporter's own floor (`Reporter.init`), so the notice says what is used.
            return (
                Self.shortestReport, EnvironmentNotice(variable, raw, "is below the shortest report interval, 100us")
            )
        case .valid(let duration): return (duration, nil)
        case .clamped(let duration, let reason): return (duration, EnvironmentNotice(variable, raw, reason))
        case .malformed:
            let form = "is not a duration (a number and ns, us, ms, s, m or h, e.g. 10ms)"
            return (nil, EnvironmentNotice(variable, raw, form))
        }
    }

    /// The most bytes of a path a Unix socket address holds (`sun_path`, less its terminating NUL).
    static let longestSocketPath = 107

    /// `TASKWATCH_SOCKET`: a notice when no connection to that path can ever be made, so that no report
    /// would ever go out without a word. `bytes` are the value as the environment holds it, when known:
    /// a value that is not UTF-8 reaches Swift with its bad bytes replaced (U+FFFD), a different path.
    static func socketNotice(_ value: String?, bytes: [UInt8]? = nil) -> EnvironmentNotice? {
        let variable = "TASKWATCH_SOCKET"
        guard let value else { return nil }
        if let bytes, String(validating: bytes, as: UTF8.self) == nil {
            return EnvironmentNotice(variable, value, "is not valid UTF-8")
        }
        let path = value.trimmingASCIIWhitespace()
        if path.utf8.count > longestSocketPath {
            return EnvironmentNotice(
                variable, value,
                "is \(path.utf8.count) bytes, longer than the \(longestSocketPath) a Unix socket address holds")
        }
        return nil
    }

    /// The bytes of the process's environment variable `name`, or nil when it is unset.
    static func rawValue(_ name: String) -> [UInt8]? {
        guard let value = getenv(name) else { return nil }
        return Array(UnsafeBufferPointer(start: value, count: strlen(value))).map { UInt8(bitPattern: $0) }
    }

    /// `duration` in the largest unit that writes it exactly: `10ms`, `2m`, `1500us`.
    static func format(_ duration: Duration) -> String {
        let nanoseconds = duration.nanoseconds
        let lengths: [(String, UInt64)] = [
            ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000),
        ]
        for (suffix, length) in lengths where nanoseconds % length == 0 {
            return "\(nanoseconds / length)\(suffix)"
        }
        return "\(nanoseconds)ns"
    }
}

/// A value of the environment that was not taken as written. `TaskWatch.start()` writes each once on
/// standard error, one line, with what is used instead.
struct EnvironmentNotice: Sendable, Equatable {
    let variable: String
    /// The value as written.
    let value: String
    /// What is wrong with it.
    let problem: String

    init(_ variable: String, _ value: String, _ problem: String) {
        self.variable = variable
        self.value = value
        self.problem = problem
    }

    /// The line to write: the value quoted and escaped (a newline in it cannot break the line) and cut
    /// to 64 characters, then the problem and `instead`.
    func line(instead: String) -> String {
        let shown = value.count > 64 ? String(value.prefix(64)) + "…" : value
        return "TaskWatch: \(variable)=\(shown.debugDescription) \(problem); \(instead)"
    }
}

extension String {
    /// Without leading and trailing spaces, tabs, line feeds, carriage returns, vertical tabs and form
    /// feeds.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Unicode.Scalar) -> Bool = { $0 == " " || ("\t"..."\r").contains($0) }
        let scalars = unicodeScalars.drop(while: isSpace)
        var end = scalars.endIndex
        while end > scalars.startIndex, isSpace(scalars[scalars.index(before: end)]) {
            end = scalars.index(before: end)
        }
        return String(String.UnicodeScalarView(scalars[..<end]))
    }
}

/// Whether instrumentation is off at runtime (`TASKWATCH_DISABLED=1`), read once on first use.
let instrumentationDisabled: Bool = Environment.isDisabled(Environment.current())
