import Glibc
import Logging

/// The two log line formats of the exporter-toolkit convention.
public enum LogFormat: String, Sendable, CaseIterable {
    case logfmt
    case json
}

/// A swift-log handler writing one line per event to stderr, as `logfmt` or JSON.
///
/// Each line is built in full and written with a single `write(2)`, so lines from different threads
/// never interleave.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let format: LogFormat

    public init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    /// The level as `--log.level` spells it and go-kit's logfmt writes it (`warn`, not `warning`), so a
    /// log query written for the other exporters matches ours.
    static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .warning: "warn"
        case .critical: "error"
        case .trace: "debug"
        default: level.rawValue
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = render(event)
        line.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }

    /// The line `log(event:)` writes, with its newline.
    func render(_ event: LogEvent) -> String {
        var fields: [(String, String)] = [
            ("ts", Self.timestamp()), ("level", Self.levelName(event.level)), ("caller", label),
            ("msg", event.message.description),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        var numbers: Set<String> = []
        for key in merged.keys.sorted() {
            let value = merged[key]!
            if case .stringConvertible(let convertible) = value, convertible is any BinaryInteger {
                numbers.insert(key)
            }
            fields.append((key, value.description))
        }
        var line = format == .json ? Self.json(fields, numbers: numbers) : Self.logfmt(fields)
        line.append("\n")
        return line
    }

    public func log(
        level: Logger.Level,
        message: Logger.Message,
        metadata: Logger.Metadata?,
        source: String,
        file: String,
        function: String,
        line: UInt
    ) {
        log(
            event: LogEvent(
                level: level, message: message, metadata: metadata, source: source, file: file, function: function,
                line: line))
    }

    static func logfmt(_ fields: [(String, String)]) -> String {
        fields.map { key, value in
            let needsQuotes =
                value.isEmpty
                || value.unicodeScalars.contains { $0 == " " || $0 == "=" || $0 == "\"" || isControl($0) }
            guard needsQuotes else { return "\(key)=\(value)" }
            // By scalar, not by Character: "\r\n" is one Character, and a match on "\n" alone let a
            // client's process name carry a raw CR LF into the log and start a forged line.
            let escaped = Self.escaped(value, where: isControl)
            return "\(key)=\"\(escaped)\""
        }.joined(separator: " ")
    }

    /// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: whatever a terminal or a
    /// log collector might take as the end of a line or as a command.
    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }

    /// `value` with `\` and `"` escaped, and the scalars `isEscaped` picks as `\n`, `\r`, `\t` or
    /// `\u00XX`: the escapes logfmt and JSON share.
    private static func escaped(_ value: String, where isEscaped: (Unicode.Scalar) -> Bool) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n" where isEscaped(scalar): out += "\\n"
            case "\r" where isEscaped(scalar): out += "\\r"
            case "\t" where isEscaped(scalar): out += "\\t"
            case _ where isEscaped(scalar):
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// A JSON object of `fields`, in order; the values of the keys in `numbers` (integers given as
    /// `.stringConvertible`: pids, uids, limits) as JSON numbers, the rest as strings, so that a log
    /// query can compare `pid` or `limit` as numbers, as with the other exporters' JSON logs.
    static func json(_ fields: [(String, String)], numbers: Set<String> = []) -> String {
        let members = fields.map { key, value in
            let isNumber = numbers.contains(key) && !value.isEmpty && Int64(value) != nil
            return "\(jsonString(key)):\(isNumber ? value : jsonString(value))"
        }
        return "{" + members.joined(separator: ",") + "}"
    }

    static func jsonString(_ value: String) -> String {
        "\"" + escaped(value, where: { $0.value < 0x20 }) + "\""
    }

    static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let millis = Int32(spec.tv_nsec / 1_000_000)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(millis, 3))Z"
    }
}
