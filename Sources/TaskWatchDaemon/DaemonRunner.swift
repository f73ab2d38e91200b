import Glibc
import Logging

/// Runs a daemon until SIGTERM or SIGINT, pinging the systemd watchdog meanwhile.
public enum DaemonRunner {
    /// Starts the daemon and blocks until it has shut down. Returns the process exit status.
    public static func run(
        configuration: DaemonConfiguration,
        logger: Logger,
        onReload: @escaping @Sendable (Daemon) -> Void = { _ in }
    ) -> Int32 {
        // Before any thread exists, so every thread inherits the mask and only `wait` sees them.
        let handled = [SIGTERM, SIGINT, SIGHUP]
        Signals.block(handled)
        signal(SIGPIPE, SIG_IGN)
        let daemon: Daemon
        do {
            daemon = try Daemon(configuration: configuration, logger: logger)
        } catch {
            logger.error("Cannot start", metadata: ["err": "\(error)"])
            return 1
        }
        let tick = daemon.watchdogInterval ?? .seconds(1)
        while true {
            let received = Signals.wait(for: handled, timeout: min(tick, .seconds(1)))
            daemon.watchdogPing()
            switch received {
            case SIGHUP?:
                logger.info("Reloading on SIGHUP")
                onReload(daemon)
            case let signal?:
                logger.info("Received signal", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")"])
                daemon.shutdown()
                return 0
            case nil:
                continue
            }
        }
    }
}
