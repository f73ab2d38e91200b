import Logging
import Synchronization

/// The web config in force, swappable at runtime: SIGHUP and a periodic check re-read the file. A
/// reload is all or nothing: the new users and, when they changed, the new TLS settings (a renewed
/// certificate, say) take effect together, or, when the file or its certificate cannot be used, the
/// previous config stays in force and the failure is logged.
public final class WebConfigState: Sendable {
    /// What asked for a reload.
    public enum Trigger: Sendable {
        /// SIGHUP: always re-applied and logged.
        case signal
        /// The periodic check (`--web.config.check-interval`): acts only on a file whose content
        /// differs from the config in force, and logs a failure only when it differs from the last
        /// one, so a file left broken for hours logs once rather than every check.
        case check
    }

    private struct Current {
        var config: WebConfig
        var authenticator: BasicAuthenticator
    }

    public let path: String
    private let current: Mutex<Current>
    private let status: Mutex<WebConfigStatus>
    /// The last failure a check logged, so the same failure is not logged again.
    private let lastCheckFailure = Mutex<String?>(nil)

    /// Loads `path`; throws when the file cannot be used, so a bad file fails startup.
    public init(path: String) throws(WebConfig.LoadError) {
        self.path = path
        let config = try WebConfig.load(path: path)
        current = Mutex(Current(config: config, authenticator: BasicAuthenticator(users: config.basicAuthUsers)))
        status = Mutex(WebConfigStatus(lastReloadSuccessful: true, lastSuccessSeconds: SystemClock().wallSeconds()))
    }

    public var config: WebConfig { current.withLock { $0.config } }

    /// How the last load went, for the daemon's own series.
    public var lastReload: WebConfigStatus { status.withLock { $0 } }

    /// Applies the authenticator in force now to `request`.
    public func authorize(_ request: HTTPRequest) -> HTTPResponse? {
        current.withLock { $0.authenticator }.authorize(request)
    }

    /// Re-reads the file. When its TLS settings differ from those in force (the certificate and key
    /// are compared by content, so a certificate renewed in place counts), `applyTLS` puts them on
    /// the listeners first; if it throws, nothing changes. Returns whether the file's config is in
    /// force afterwards.
    @discardableResult
    public func reload(
        logger: Logger, trigger: Trigger = .signal, applyTLS: (WebConfig.TLSConfig?) throws -> Void = { _ in }
    ) -> Bool {
        let config: WebConfig
        do { config = try WebConfig.load(path: path) } catch {
            failed("Web config reload failed; keeping the previous config", "\(error)", trigger, logger)
            return false
        }
        if trigger == .check, config == self.config {
            // Unchanged. A check after a failure that now loads again means the file is good again.
            if lastCheckFailure.withLock({ $0 }) != nil { succeeded() }
            return true
        }
        let tlsChanged = config.tls != self.config.tls
        if tlsChanged {
            do { try applyTLS(config.tls) } catch {
                failed(
                    "Web config reload failed: its TLS settings cannot be used; keeping the previous config",
                    "\(error)", trigger, logger)
                return false
            }
        }
        let authenticator = BasicAuthenticator(users: config.basicAuthUsers)
        current.withLock { $0 = Current(config: config, authenticator: authenticator) }
        succeeded()
        logger.info(
            "Web config reloaded",
            metadata: [
                "file": "\(path)", "users": "\(config.basicAuthUsers.count)",
                "tls": "\(tlsChanged ? "replaced" : "unchanged")",
                "trigger": "\(trigger == .signal ? "SIGHUP" : "file changed")",
            ])
        return true
    }

    private func succeeded() {
        lastCheckFailure.withLock { $0 = nil }
        status.withLock {
            $0 = WebConfigStatus(lastReloadSuccessful: true, lastSuccessSeconds: SystemClock().wallSeconds())
        }
    }

    private func failed(_ message: Logger.Message, _ reason: String, _ trigger: Trigger, _ logger: Logger) {
        status.withLock { $0.lastReloadSuccessful = false }
        let repeated = lastCheckFailure.withLock { last in
            defer { last = reason }
            return trigger == .check && last == reason
        }
        if !repeated { logger.error(message, metadata: ["file": "\(path)", "err": "\(reason)"]) }
    }
}

/// The outcome of the latest load of `--web.config.file`, exported as
/// `taskwatch_web_config_last_reload_successful` and `..._last_reload_success_timestamp_seconds`, the
/// names Prometheus and Alertmanager use for their own config, so a failed certificate rotation can
/// alert before the old certificate expires.
public struct WebConfigStatus: Sendable, Equatable {
    /// Whether the latest load (at start, or on the latest SIGHUP) is in force.
    public var lastReloadSuccessful: Bool
    /// Unix time of the latest load that is in force.
    public var lastSuccessSeconds: Double

    public init(lastReloadSuccessful: Bool, lastSuccessSeconds: Double) {
        self.lastReloadSuccessful = lastReloadSuccessful
        self.lastSuccessSeconds = lastSuccessSeconds
    }
}
