import Glibc
import Logging

/// Runs a daemon until SIGTERM or SIGINT, pinging the systemd watchdog meanwhile while the daemon
/// shows progress (see `Daemon.stall()`).
public enum DaemonRunner {
    /// Starts the daemon and blocks until it has shut down. Returns the process exit status.
    /// `onReload` runs on SIGHUP, and every `configuration.webConfigCheckInterval` as a `.check`.
    public static func run(
        configuration requested: DaemonConfiguration,
        logger: Logger,
        onReload: @escaping @Sendable (Daemon, WebConfigState.Trigger) -> Void = { _, _ in }
    ) -> Int32 {
        // Before any thread exists, so every thread inherits the mask and only `wait` sees them.
        let handled = [SIGTERM, SIGINT, SIGHUP]
        Signals.block(handled)
        signal(SIGPIPE, SIG_IGN)
        // Their default action ends the process and leaves the socket file behind; Go daemons such as
        // node_exporter ignore them, so a stray `kill -USR1` (log rotation scripts) must not stop us.
        signal(SIGUSR1, SIG_IGN)
        signal(SIGUSR2, SIG_IGN)
        var configuration = requested
        let limit = FileDescriptorLimit.raise()
        (configuration.limits.maxClients, configuration.httpMaxConnections) = FileDescriptorLimit.caps(
            clients: requested.limits.maxClients, httpConnections: requested.httpMaxConnections, limit: limit)
        if configuration.limits.maxClients < requested.limits.maxClients
            || configuration.httpMaxConnections < requested.httpMaxConnections
        {
            logger.warning(
                "Connection caps lowered to fit the open-file limit; raise LimitNOFILE (ulimit -n) to keep them",
                metadata: [
                    "nofile": .stringConvertible(limit),
                    "ingest_max_clients": "\(configuration.limits.maxClients) of \(requested.limits.maxClients)",
                    "web_max_connections": "\(configuration.httpMaxConnections) of \(requested.httpMaxConnections)",
                ])
        }
        logger.info(
            "Starting taskwatchd",
            metadata: [
                "version": "\(TaskWatchDaemonInfo.version)", "revision": "\(TaskWatchDaemonInfo.revision)",
                "swift": "\(TaskWatchDaemonInfo.swiftVersion)",
            ])
        let daemon: Daemon
        do {
            daemon = try Daemon(configuration: configuration, logger: logger)
        } catch {
            logger.error("Cannot start", metadata: ["err": "\(error)"])
            return 1
        }
        let checkInterval = configuration.webConfigCheckInterval
        let watchdogInterval = daemon.watchdogInterval
        let tick = min(watchdogInterval ?? .seconds(1), checkInterval ?? .seconds(1), .seconds(1))
        let clock = ContinuousClock()
        var nextCheck = checkInterval.map { clock.now.advanced(by: $0) }
        var nextPing = clock.now
        var reportedStall: String?
        while true {
            let received = Signals.wait(for: handled, timeout: tick)
            if let watchdogInterval, clock.now >= nextPing {
                nextPing = clock.now.advanced(by: watchdogInterval)
                let stall = daemon.watchdogPing()
                if let stall, reportedStall == nil {
                    logger.error(
                        "Not pinging the systemd watchdog: the daemon has stopped making progress",
                        metadata: ["stall": "\(stall)"])
                } else if stall == nil, reportedStall != nil {
                    logger.info("Pinging the systemd watchdog again: the daemon is making progress")
                }
                reportedStall = stall
            }
            switch received {
            case SIGHUP?:
                logger.info("Reloading on SIGHUP")
                onReload(daemon, .signal)
            case let signal?:
                logger.info("Received signal", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")"])
                daemon.shutdown()
                return 0
            case nil:
                break
            }
            if let checkInterval, let due = nextCheck, clock.now >= due {
                onReload(daemon, .check)
                nextCheck = clock.now.advanced(by: checkInterval)
            }
        }
    }
}
