import Synchronization
import TaskWatchWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How the reporter connects and how often it reports. The defaults come from the environment
/// (`TASKWATCH_SOCKET`, `TASKWATCH_PROCESS`, `TASKWATCH_INTERVAL`, `TASKWATCH_DISABLED`) and the
/// package trait. `TASKWATCH_INTERVAL` is a number and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`;
/// none means milliseconds), clamped to `durationRange`; `TASKWATCH_DISABLED` is `1`, `true`, `yes`
/// or `on` to disable, `0`, `false`, `no` or `off` not to (any case). Surrounding whitespace is
/// ignored and an empty value counts as unset. A value that is not one of these is ignored, and
/// `TaskWatch.start()` says so once on standard error, one line starting `TaskWatch:`, with what it
/// uses instead. So does a `TASKWATCH_SOCKET` that no connection can use: longer than the 107 bytes a
/// Unix socket address holds, or not UTF-8. A relative one is taken relative to the working directory
/// at each connection.
public struct Configuration: Sendable {
    /// The daemon's ingest socket.
    public var socketPath: String
    /// The `process` label; defaults to the executable's name.
    public var processName: String
    /// How often a report is sent. Clamped to `durationRange`, the range `TASKWATCH_INTERVAL` accepts:
    /// zero or less becomes 1 ns, more than about 11.5 days becomes the most it allows. The reporter then
    /// reports at most every 100 µs.
    public var interval: Duration {
        didSet { interval = Self.clamped(interval) }
    }
    /// How often an executor-lag probe job is scheduled. Clamped to `durationRange`, as `interval` is;
    /// the reporter then probes at most every millisecond.
    public var probeInterval: Duration {
        didSet { probeInterval = Self.clamped(probeInterval) }
    }
    /// Labels the daemon adds to every series of this process. `process` and `pid` are the daemon's.
    public var labels: [String: String]
    /// When true, `start()` does nothing.
    public var isDisabled: Bool
    /// Whether a normal exit of the process sends the daemon a goodbye (the `atexit` handler
    /// `TaskWatch.start()` installs), so that it drops the process's series at once. True by default.
    /// False keeps the last values on `/metrics` through the daemon's grace period, with
    /// `taskwatch_client_up 0`, as after a crash: for a short run whose final counts (`TaskWatch.flush`)
    /// should stay visible after it ends.
    public var saysGoodbyeAtExit = true

    /// A configuration from the given environment, by default the process's own.
    public init(environment: [String: String]? = nil) {
        let socketBytes = environment == nil ? Environment.rawValue("TASKWATCH_SOCKET") : nil
        var environment = environment ?? Environment.current()
        // Read as every variable is (`Environment`): surrounding whitespace ignored, empty as unset.
        for variable in ["TASKWATCH_SOCKET", "TASKWATCH_PROCESS"] {
            let trimmed = environment[variable]?.trimmingASCIIWhitespace()
            environment[variable] = trimmed?.isEmpty == false ? trimmed : nil
        }
        socketPath = SocketLocation.clientPath(environment: environment, uid: UInt32(getuid()))
        processName = environment["TASKWATCH_PROCESS"] ?? Self.executableName()
        let (interval, intervalNotice) = Environment.interval(environment)
        self.interval = interval ?? Profile.reportInterval
        probeInterval = Profile.probeInterval
        labels = [:]
        let (disabled, disabledNotice) = Environment.disabledSetting(environment)
        isDisabled = disabled
        let socketNotice =
            environment["TASKWATCH_SOCKET"] == nil
            ? nil : Environment.socketNotice(environment["TASKWATCH_SOCKET"], bytes: socketBytes)
        environmentNotices = [intervalNotice, disabledNotice, socketNotice].compactMap { $0 }
    }

    /// Values of the environment that were not taken as written.
    var environmentNotices: [EnvironmentNotice] = []

    /// Whether `writeNotices()` wrote anything yet in this process.
    private static let noticesWritten = Atomic<Bool>(false)

    /// A line for each of `environmentNotices`, ending with what is used instead.
    var noticeLines: [String] {
        environmentNotices.map { notice in
            switch notice.variable {
            case "TASKWATCH_INTERVAL": notice.line(instead: "using \(Environment.format(interval))")
            case "TASKWATCH_SOCKET": notice.line(instead: "no report can be sent")
            default: notice.line(instead: "instrumentation stays on")
            }
        }
    }

    /// Writes `noticeLines` to standard error, unless some were written before in this process. Called by
    /// `TaskWatch.start()`, never on a hot path.
    func writeNotices() {
        let lines = noticeLines
        guard !lines.isEmpty, !Self.noticesWritten.exchange(true, ordering: .relaxed) else { return }
        for line in lines {
            let bytes = Array((line + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
    }

    /// The durations the reporter accepts: from 1 ns to just under 10^15 ns (about 11.5 days), as for
    /// `TASKWATCH_INTERVAL`. Beyond it the reporter's nanosecond deadlines would overflow.
    public static let durationRange: ClosedRange<Duration> = .nanoseconds(1) ... .nanoseconds(999_999_999_999_999)

    static func clamped(_ duration: Duration) -> Duration {
        min(max(duration, durationRange.lowerBound), durationRange.upperBound)
    }

    static func executableName() -> String {
        let path = CommandLine.arguments.first ?? ""
        let name = path.split(separator: "/").last.map(String.init) ?? ""
        return name.isEmpty ? "swift" : name
    }
}

extension Duration {
    /// Whole nanoseconds within `Configuration.durationRange` (a duration of zero or less counts as 1 ns),
    /// so that no caller can trap on the conversion or overflow adding it to a deadline.
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = Configuration.clamped(self).components
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
