import Glibc
import Logging
import Synchronization
import TaskWatchWire

/// Everything `taskwatchd` can be told on its command line.
public struct DaemonConfiguration: Sendable {
    /// `--web.listen-address`, repeatable.
    public var listenAddresses: [String] = [":10101"]
    /// `--web.telemetry-path`.
    public var telemetryPath = "/metrics"
    /// `--web.systemd-socket`: take the HTTP listeners from socket activation instead of binding.
    public var systemdSocket = false
    /// `--ingest.socket`; nil means the contract's default for this user.
    public var ingestSocketPath: String?
    /// `--ingest.socket-mode`.
    public var ingestSocketMode: mode_t = 0o660
    public var limits = RegistryLimits()
    /// Threads serving HTTP per listener.
    public var httpThreads = 2
    /// `--web.max-connections`: HTTP connections open at once, all listeners together. A new one past it
    /// takes the place of one not serving a scrape (`taskwatch_http_connections_evicted_total`), or is
    /// closed on arrival when there is none (`taskwatch_http_connections_refused_total`). See
    /// `HTTPServer.defaultConnectionLimit` for the default.
    public var httpMaxConnections = HTTPServer.defaultConnectionLimit
    /// `--web.config.file` in force: who may scrape, how often, the headers every response carries
    /// and how its latest load went; nil serves everyone. Read per request, so a reload applies.
    public var web: WebConfigState?
    /// TLS for the HTTP listeners (from `--web.config.file`).
    public var tls: HTTPServer.TLS?
    /// `--web.config.check-interval`: how often `DaemonRunner` re-reads the web config for changes,
    /// which picks up a certificate renewed in place (cert-manager, certbot) with nobody sending
    /// SIGHUP, as the exporter-toolkit does by reading its files on each handshake. Nil: never.
    public var webConfigCheckInterval: Duration? = .seconds(30)
    /// How long the ingest thread, the HTTP accept thread or one request handler may go without
    /// progress before `/-/healthy` fails and the systemd watchdog is no longer pinged.
    public var stallLimit: Duration = .seconds(15)

    public init() {}

    /// The ingest socket path this configuration resolves to.
    public var resolvedIngestSocketPath: String {
        ingestSocketPath ?? SocketLocation.defaultPath(environment: currentEnvironment(), uid: getuid())
    }
}

/// A failure to start, with a message fit for a person.
public struct DaemonError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// The running daemon: the ingest listener feeding the registry, and the HTTP server reading it.
public final class Daemon: Sendable {
    public let registry: Registry
    public let exporter: Exporter
    /// Internal so tests can stop its thread and watch the daemon notice.
    let listener: IngestListener
    private let server: HTTPServer
    private let notifier: SystemdNotifier
    private let logger: Logger
    private let ready = ReadinessFlag()
    private let liveness: LivenessCheck
    private let requestsInFlight = RequestsInFlight()
    /// The TCP ports actually bound, in listener order (useful with port 0).
    public let httpPorts: [UInt16]
    /// The ingest socket path, when known.
    public let ingestPath: String?

    /// Binds both sockets (or adopts them from systemd) and starts serving.
    public init(configuration: DaemonConfiguration, logger: Logger) throws(DaemonError) {
        self.logger = logger
        liveness = LivenessCheck(limit: configuration.stallLimit)
        notifier = SystemdNotifier.fromProcessEnvironment()
        let passed: [SocketActivation.PassedSocket]
        do { passed = try SocketActivation.takeFromProcessEnvironment() } catch {
            throw DaemonError("socket activation: \(error)")
        }

        let ingestSocket: IngestSocket
        do {
            if let inherited = passed.first(where: { $0.role == .ingest }) {
                ingestSocket = try IngestSocket.adopt(fd: inherited.fd)
                logger.info("Using ingest socket from systemd", metadata: ["fd": .stringConvertible(inherited.fd)])
                if configuration.ingestSocketPath != nil || configuration.ingestSocketMode != IngestSocket.defaultMode {
                    logger.warning(
                        "--ingest.socket and --ingest.socket-mode have no effect on a socket systemd passes; set ListenSequentialPacket= and SocketMode= in taskwatchd.socket instead"
                    )
                }
            } else {
                ingestSocket = try IngestSocket.bind(
                    path: configuration.resolvedIngestSocketPath, mode: configuration.ingestSocketMode)
            }
        } catch {
            throw DaemonError("ingest socket: \(error)")
        }
        ingestPath = ingestSocket.path

        var httpSockets: [Int32] = []
        do {
            if configuration.systemdSocket {
                if configuration.listenAddresses != DaemonConfiguration().listenAddresses {
                    // The exporter-toolkit ignores it silently; a runbook advising the flag met exactly that.
                    logger.warning(
                        "--web.listen-address has no effect with --web.systemd-socket; set ListenStream= in a drop-in for taskwatchd-http.socket instead",
                        metadata: ["ignored": "\(configuration.listenAddresses.joined(separator: ","))"])
                }
                httpSockets = try passed.filter { $0.role == .http }.map {
                    try ListenAddress.adoptListeningSocket($0.fd)
                }
                if httpSockets.isEmpty {
                    throw DaemonError("--web.systemd-socket given, but systemd passed no stream socket")
                }
            } else {
                for text in configuration.listenAddresses {
                    httpSockets.append(try ListenAddress(parsing: text).openListeningSocket())
                }
            }
        } catch {
            ingestSocket.close()
            for fd in httpSockets { close(fd) }
            throw error as? DaemonError ?? DaemonError("web listener: \(error)")
        }
        httpPorts = httpSockets.compactMap { ListenAddress.boundPort(of: $0) }

        // One log for every refusal, so each reason is rate-limited once whichever part refuses.
        let refusals = RefusalLog(logger: logger)
        registry = Registry(limits: configuration.limits, log: refusals)
        let build = BuildInfo(
            version: TaskWatchDaemonInfo.version, revision: TaskWatchDaemonInfo.revision,
            swiftVersion: TaskWatchDaemonInfo.swiftVersion)
        do {
            listener = try IngestListener(
                socket: ingestSocket, sink: registry, acceptFailed: { refusals.acceptFailed(errno: $0) },
                socketFileChanged: { logger.warning("\($0)", metadata: ["path": "\($0.path)"]) })
        } catch {
            ingestSocket.close()
            for fd in httpSockets { close(fd) }
            throw DaemonError("ingest listener: \(error)")
        }
        let acceptFailures: @Sendable () -> UInt64 = { [listener] in listener.acceptFailures }
        var webConfigStatus: (@Sendable () -> WebConfigStatus)?
        var authorize: @Sendable (HTTPRequest) -> HTTPResponse? = { _ in nil }
        if let web = configuration.web {
            webConfigStatus = { web.lastReload }
            authorize = { web.authorize($0) }
        }
        let httpRequests = HTTPRequestCounts(
            telemetryPath: WebHandler.normalizedTelemetryPath(configuration.telemetryPath))
        let httpConnections = HTTPConnectionCounts()
        exporter = Exporter(
            registry: registry, build: build, acceptFailures: acceptFailures, webConfigStatus: webConfigStatus,
            httpRequests: httpRequests, httpConnections: httpConnections)

        let exporter = exporter
        let ready = ready
        // The stall check reads the server's heartbeat, which exists only once the server does.
        let stallSource = StallSource()
        let handler = WebHandler(
            telemetryPath: configuration.telemetryPath,
            isReady: { ready.isReady },
            healthProblem: { stallSource.stall() },
            authorize: authorize,
            render: { exporter.render($0) },
            renderBody: { exporter.renderBody($0) }
        )
        let errorLogger = logger
        let requestsInFlight = requestsInFlight
        do {
            server = try HTTPServer(
                options: HTTPServer.Options(
                    listeningSockets: httpSockets, threadPoolSize: configuration.httpThreads,
                    connectionLimit: configuration.httpMaxConnections, tls: configuration.tls,
                    errorLog: { errorLogger.debug("web server: \($0)") },
                    answered: { httpRequests.count(path: $0, status: $1) }, connections: httpConnections),
                handler: { [web = configuration.web] request in
                    requestsInFlight.track {
                        guard let web else { return handler.handle(request) }
                        // The rate limit comes first, so a flood of wrong passwords never reaches bcrypt.
                        var response = web.admit() ?? handler.handle(request)
                        response.headers += web.responseHeaders
                        return response
                    }
                })
        } catch {
            listener.stop()
            throw DaemonError("web server: \(error)")
        }
        do { try listener.start() } catch {
            server.stop()
            throw DaemonError("ingest listener: \(error)")
        }
        stallSource.set { [weak self] in self?.stall() }
        ready.set(true)
        logger.info(
            "Listening",
            metadata: [
                "ingest": "\(ingestSocket.path ?? "fd \(ingestSocket.fd)")",
                "http":
                    "\(configuration.systemdSocket ? "systemd" : configuration.listenAddresses.joined(separator: ","))",
                "ports": "\(httpPorts.map(String.init).joined(separator: ","))",
            ])
        notifier.ready()
    }

    /// How often to ping the systemd watchdog, if it is enabled.
    public var watchdogInterval: Duration? { notifier.watchdogPingInterval }

    /// Pings the systemd watchdog, unless a part of the daemon has stalled (see `stall()`): then
    /// systemd restarts it once the watchdog interval passes. Returns the stall, if any.
    @discardableResult
    public func watchdogPing() -> String? {
        if let stall = stall() { return stall }
        notifier.watchdog()
        return nil
    }

    /// Which part of the daemon has made no progress for longer than `stallLimit`, or nil when the
    /// ingest thread, the HTTP accept thread and every request handler are working.
    public func stall() -> String? {
        liveness.stall(
            now: Heartbeat.now(), ingestBeat: listener.heartbeat.lastBeatNanoseconds,
            acceptBeat: server.acceptHeartbeat.lastBeatNanoseconds,
            oldestRequestStart: requestsInFlight.oldestStartNanoseconds)
    }

    /// Serves HTTPS with `tls` (HTTP when nil) from now on, with no gap on the port; see
    /// `HTTPServer.reconfigure(tls:)`. Throws, and keeps serving as before, when `tls` cannot be used.
    public func reconfigureTLS(_ tls: HTTPServer.TLS?) throws(HTTPServer.StartError) {
        try server.reconfigure(tls: tls)
        logger.info("HTTP listeners now serve \(tls == nil ? "HTTP" : "HTTPS with the new certificate")")
    }

    /// Stops accepting, lets scrapes in flight finish, closes every client and removes the socket file
    /// this daemon created.
    public func shutdown() {
        ready.set(false)
        notifier.stopping()
        logger.info("Shutting down")
        server.stop()
        listener.stop()
    }
}

/// The environment as a dictionary (Foundation-free).
func currentEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let separator = text.firstIndex(of: "=") {
            result[String(text[..<separator])] = String(text[text.index(after: separator)...])
        }
        pointer += 1
    }
    return result
}

/// `Daemon.stall` for the HTTP handler, which is made before the daemon it reports on.
final class StallSource: Sendable {
    private let check = Mutex<(@Sendable () -> String?)?>(nil)

    func set(_ stall: @escaping @Sendable () -> String?) { check.withLock { $0 = stall } }

    func stall() -> String? { check.withLock { $0 }?() }
}

/// Whether `/-/ready` says yes: shared by reference with the HTTP handler.
final class ReadinessFlag: Sendable {
    private let value = Atomic<Bool>(false)

    var isReady: Bool { value.load(ordering: .relaxed) }

    func set(_ ready: Bool) { value.store(ready, ordering: .relaxed) }
}
