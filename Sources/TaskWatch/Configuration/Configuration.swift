import TaskWatchWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How the reporter connects and how often it reports. The defaults come from the environment
/// (`TASKWATCH_SOCKET`, `TASKWATCH_PROCESS`, `TASKWATCH_INTERVAL`, `TASKWATCH_DISABLED`) and the
/// package trait.
public struct Configuration: Sendable {
    /// The daemon's ingest socket.
    public var socketPath: String
    /// The `process` label; defaults to the executable's name.
    public var processName: String
    /// How often a report is sent.
    public var interval: Duration
    /// How often an executor-lag probe job is scheduled.
    public var probeInterval: Duration
    /// Labels the daemon adds to every series of this process. `process` and `pid` are the daemon's.
    public var labels: [String: String]
    /// When true, `start()` does nothing.
    public var isDisabled: Bool

    /// A configuration from the given environment, by default the process's own.
    public init(environment: [String: String]? = nil) {
        let environment = environment ?? Environment.current()
        socketPath = SocketLocation.clientPath(environment: environment, uid: UInt32(getuid()))
        processName = environment["TASKWATCH_PROCESS"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.executableName()
        interval = environment["TASKWATCH_INTERVAL"].flatMap(Environment.parseDuration) ?? Profile.reportInterval
        probeInterval = Profile.probeInterval
        labels = [:]
        isDisabled = Environment.isDisabled(environment)
    }

    static func executableName() -> String {
        let path = CommandLine.arguments.first ?? ""
        let name = path.split(separator: "/").last.map(String.init) ?? ""
        return name.isEmpty ? "swift" : name
    }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }
}
