import ArgumentParser
import Glibc
import Logging
import TaskWatchDaemon
import TaskWatchWire

/// `taskwatchd`: flags in the exporter-toolkit style, then the daemon library does the work.
@main
struct TaskwatchdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taskwatchd",
        abstract: "Collects Swift task metrics from local processes and serves them to Prometheus.",
        version: "taskwatchd \(TaskWatchDaemonInfo.version) (swift \(TaskWatchDaemonInfo.swiftVersion))"
    )

    // The default is spelled out in the help rather than given as the array's default value, which
    // ArgumentParser would not show for an array; it comes from the configuration, so the two agree.
    @Option(
        name: .customLong("web.listen-address"),
        help: "Address to serve /metrics on, [host]:port. Repeatable. (default: \(defaultListenAddresses))")
    var listenAddresses: [String] = []

    @Option(name: .customLong("web.telemetry-path"), help: "Path under which to expose metrics.")
    var telemetryPath = "/metrics"

    @Option(name: .customLong("web.config.file"), help: "Exporter-toolkit web config file (TLS, basic auth).")
    var webConfigFile: String?

    @Option(
        name: .customLong("web.config.check-interval"),
        help:
            "How often to re-read --web.config.file and its certificate for changes (0 turns it off; SIGHUP always works)."
    )
    var webConfigCheckInterval = "30s"

    // 512 by default: well under the limit at which libmicrohttpd 0.9.75 deadlocks (see
    // HTTPServer.defaultConnectionLimit), and far more than the few Prometheus servers scraping a host need.
    @Option(
        name: .customLong("web.max-connections"),
        help: "Most HTTP connections open at once; a new one past it replaces one not serving a scrape, or is closed.")
    var webMaxConnections = DaemonConfiguration().httpMaxConnections

    @Flag(name: .customLong("web.systemd-socket"), help: "Use the HTTP socket(s) passed by systemd socket activation.")
    var systemdSocket = false

    @Option(
        name: .customLong("ingest.socket"),
        help: ArgumentHelp(
            "Ingest socket path. (default: /run/taskwatch/ingest.sock for root; for other users "
                + "$XDG_RUNTIME_DIR/taskwatch/ingest.sock, or /tmp/taskwatch-$UID/ingest.sock when "
                + "XDG_RUNTIME_DIR is unset; currently \(DaemonConfiguration().resolvedIngestSocketPath))"))
    var ingestSocket: String?

    @Option(name: .customLong("ingest.socket-mode"), help: "File mode of the ingest socket, in octal.")
    var ingestSocketMode = "0660"

    @Option(name: .customLong("ingest.max-clients"), help: "Most clients connected at once.")
    var maxClients = 4_096

    @Option(name: .customLong("ingest.max-series"), help: "Most series held for all clients together.")
    var maxSeries = 1_000_000

    @Option(name: .customLong("ingest.max-series-per-client"), help: "Most series one client may declare.")
    var maxSeriesPerClient = 10_000

    @Option(
        name: .customLong("ingest.max-label-bytes-per-client"),
        help:
            "Most bytes one client's series may add to /metrics: each line's name, labels and the client's own labels.")
    var maxLabelBytesPerClient = RegistryLimits().maxLabelBytesPerClient

    @Option(
        name: .customLong("ingest.max-label-bytes"),
        help:
            "Most bytes all clients' series and per-client lines may add to /metrics together, with every metric's help text."
    )
    var maxLabelBytes = RegistryLimits().maxLabelBytes

    @Option(
        name: .customLong("ingest.max-clients-per-uid"),
        help: "Most clients of one uid connected at once; 0 (the default) sets no cap.")
    var maxClientsPerUID = 0

    @Option(
        name: .customLong("ingest.max-series-per-uid"),
        help: "Most series held for the clients of one uid together; 0 (the default) sets no cap.")
    var maxSeriesPerUID = 0

    @Option(
        name: .customLong("ingest.allowed-uids"), parsing: .upToNextOption,
        help: "Only peers with one of these uids (or an allowed gid) may connect. Comma-separated.")
    var allowedUIDs: [String] = []

    @Option(
        name: .customLong("ingest.allowed-gids"), parsing: .upToNextOption,
        help:
            "Only peers with one of these gids, primary or supplementary (or an allowed uid), may connect. Comma-separated."
    )
    var allowedGIDs: [String] = []

    @Option(name: .customLong("client.grace"), help: "How long a gone process's last values stay visible.")
    var clientGrace = "30s"

    @Option(name: .customLong("peak.window"), help: "Window of swift_tasks_peak.")
    var peakWindow = "15s"

    @Option(name: .customLong("log.level"), help: "debug, info, warn or error.")
    var logLevel = "info"

    @Option(name: .customLong("log.format"), help: "logfmt or json.")
    var logFormat = "logfmt"

    private static let defaultListenAddresses = DaemonConfiguration().listenAddresses.joined(separator: ", ")

    func validatedConfiguration() throws -> (DaemonConfiguration, Logger) {
        guard let format = LogFormat(rawValue: logFormat) else {
            throw ValidationError("--log.format must be logfmt or json, not \(logFormat)")
        }
        let levels: [String: Logger.Level] = [
            "debug": .debug, "info": .info, "warn": .warning, "warning": .warning, "error": .error,
        ]
        guard let level = levels[logLevel] else {
            throw ValidationError("--log.level must be debug, info, warn or error, not \(logLevel)")
        }
        let logger = Logger(label: "taskwatchd") { StderrLogHandler(label: $0, format: format, level: level) }

        var configuration = DaemonConfiguration()
        if !listenAddresses.isEmpty { configuration.listenAddresses = listenAddresses }
        // Parsed now, so a typo is a usage error before any socket is bound, like every other flag.
        for address in configuration.listenAddresses {
            do { _ = try ListenAddress(parsing: address) } catch {
                throw ValidationError("--web.listen-address: \(error)")
            }
        }
        // The telemetry path is matched before the others, so one of theirs would hide them.
        let path = WebHandler.normalizedTelemetryPath(telemetryPath)
        guard !["/", "/-/healthy", "/-/ready"].contains(path), !path.contains("?"), !path.contains("#") else {
            throw ValidationError(
                "--web.telemetry-path must be a path of its own like /metrics, not \(telemetryPath.isEmpty ? "empty" : telemetryPath)"
            )
        }
        configuration.telemetryPath = telemetryPath
        configuration.systemdSocket = systemdSocket
        configuration.ingestSocketPath = ingestSocket
        guard let mode = mode_t(ingestSocketMode, radix: 8), mode <= 0o777 else {
            throw ValidationError("--ingest.socket-mode must be octal like 0660, not \(ingestSocketMode)")
        }
        configuration.ingestSocketMode = mode
        // Upper bounds keep the registry's arithmetic on them (twice a cap, a cap plus a frame) far
        // from overflow, and are far past what one host can hold anyway.
        let counts: [(String, Int, ClosedRange<Int>)] = [
            ("--ingest.max-clients", maxClients, 1...1_000_000),
            ("--ingest.max-series", maxSeries, 1...1_000_000_000),
            ("--ingest.max-series-per-client", maxSeriesPerClient, 1...1_000_000_000),
            ("--ingest.max-label-bytes-per-client", maxLabelBytesPerClient, 1...(1 << 50)),
            ("--ingest.max-label-bytes", maxLabelBytes, 1...(1 << 50)),
            ("--ingest.max-clients-per-uid", maxClientsPerUID, 0...1_000_000),
            ("--ingest.max-series-per-uid", maxSeriesPerUID, 0...1_000_000_000),
        ]
        for (flag, value, range) in counts where !range.contains(value) {
            let none = range.lowerBound == 0 ? " (0 sets no cap)" : ""
            throw ValidationError("\(flag) must be \(range.lowerBound)...\(range.upperBound)\(none), not \(value)")
        }
        guard webMaxConnections > 0, webMaxConnections <= 1_000_000 else {
            throw ValidationError("--web.max-connections must be 1...1000000, not \(webMaxConnections)")
        }
        configuration.httpMaxConnections = webMaxConnections
        configuration.limits.maxClients = maxClients
        configuration.limits.maxSeries = maxSeries
        configuration.limits.maxSeriesPerClient = maxSeriesPerClient
        configuration.limits.maxLabelBytesPerClient = maxLabelBytesPerClient
        configuration.limits.maxLabelBytes = maxLabelBytes
        configuration.limits.maxClientsPerUID = maxClientsPerUID
        configuration.limits.maxSeriesPerUID = maxSeriesPerUID
        configuration.limits.allowedUIDs = try ids(allowedUIDs, flag: "--ingest.allowed-uids")
        configuration.limits.allowedGIDs = try ids(allowedGIDs, flag: "--ingest.allowed-gids")
        guard let grace = DurationText.nanoseconds(clientGrace) else {
            throw ValidationError("--client.grace must be a duration like 30s, not \(clientGrace)")
        }
        guard let window = DurationText.nanoseconds(peakWindow), window > 0 else {
            throw ValidationError("--peak.window must be a positive duration like 15s, not \(peakWindow)")
        }
        configuration.limits.graceNanoseconds = grace
        // Each check reads the file and its certificates, and wakes the main thread: much more often
        // only burns CPU (a review saw 7 % of a core at 1ms, 40 % at 1ns).
        guard let check = DurationText.nanoseconds(webConfigCheckInterval), check == 0 || check >= 100_000_000
        else {
            throw ValidationError(
                "--web.config.check-interval must be 0 (off) or a duration of at least 100ms like 30s, not \(webConfigCheckInterval)"
            )
        }
        configuration.webConfigCheckInterval = check > 0 ? .nanoseconds(Int64(clamping: check)) : nil
        configuration.limits.peakWindowNanoseconds = window
        return (configuration, logger)
    }

    /// Loads `--web.config.file` into `configuration`; a file that cannot be used stops startup.
    private func applyWebConfig(to configuration: inout DaemonConfiguration) throws -> WebConfigState? {
        guard let webConfigFile else {
            configuration.webConfigCheckInterval = nil
            return nil
        }
        let state = try WebConfigState(path: webConfigFile)
        configuration.tls = state.config.tls?.serverTLS
        configuration.web = state
        return state
    }

    /// The ids of a repeatable, comma-separated flag. Given but empty is an error, not "allow everyone":
    /// an empty set turns the check off, and `--ingest.allowed-uids "$UNSET"` must not do that.
    private func ids(_ values: [String], flag: String) throws -> Set<UInt32> {
        var result = Set<UInt32>()
        for value in values.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: false) }) {
            guard let id = UInt32(value) else {
                throw ValidationError("\(flag): '\(value)' is not a uid or gid number")
            }
            result.insert(id)
        }
        return result
    }

    func run() throws {
        let (validated, logger) = try validatedConfiguration()
        var configuration = validated
        let webConfig: WebConfigState?
        do { webConfig = try applyWebConfig(to: &configuration) } catch {
            // Through the logger, so a JSON log stays JSON to its last line.
            logger.error("Cannot start", metadata: ["err": "web config: \(error)"])
            throw ExitCode(1)
        }
        if let webConfig {
            logger.info(
                "Web config loaded",
                metadata: [
                    "file": "\(webConfig.path)", "tls": "\(webConfig.config.tls != nil)",
                    "users": .stringConvertible(webConfig.config.basicAuthUsers.count),
                ])
        }
        let status = DaemonRunner.run(configuration: configuration, logger: logger) { daemon, trigger in
            webConfig?.reload(logger: logger, trigger: trigger) { tls in try daemon.reconfigureTLS(tls?.serverTLS) }
        }
        if status != 0 { throw ExitCode(status) }
    }
}
