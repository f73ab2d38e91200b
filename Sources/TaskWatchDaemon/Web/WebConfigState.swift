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
        /// `config.responseHeaders` in a fixed order, made once per load rather than per request.
        var responseHeaders: [(String, String)]
        var bucket: TokenBucket?

        init(_ config: WebConfig) {
            self.config = config
            authenticator = BasicAuthenticator(users: config.basicAuthUsers)
            responseHeaders = config.responseHeaders.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            bucket = config.rateLimit.map { TokenBucket($0, now: SystemClock().monotonicNanoseconds()) }
        }
    }

    public let path: String
    private let current: Mutex<Current>
    private let status: Mutex<WebConfigStatus>
    /// Requests the rate limit turned away.
    private let limited = Atomic<UInt64>(0)
    /// The last failure a check logged, so the same failure is not logged again.
    private let lastCheckFailure = Mutex<String?>(nil)

    /// Loads `path`; throws when the file cannot be used, so a bad file fails startup.
    public init(path: String) throws(WebConfig.LoadError) {
        self.path = path
        let config = try WebConfig.load(path: path)
        current = Mutex(Current(config))
        status = Mutex(WebConfigStatus(lastReloadSuccessful: true, lastSuccessSeconds: SystemClock().wallSeconds()))
    }

    public var config: WebConfig { current.withLock { $0.config } }

    /// How the last load went, for the daemon's own series.
    public var lastReload: WebConfigStatus {
        var status = status.withLock { $0 }
        status.requestsLimited = limited.load(ordering: .relaxed)
        return status
    }

    /// Applies the authenticator in force now to `request`.
    public func authorize(_ request: HTTPRequest) -> HTTPResponse? {
        current.withLock { $0.authenticator }.authorize(request)
    }

    /// Takes a token from the `rate_limit` bucket: nil admits the request, a 429 turns it away.
    public func admit() -> HTTPResponse? {
        let wait: UInt64? = current.withLock { current in
            guard var bucket = current.bucket else { return nil }
            defer { current.bucket = bucket }
            return bucket.take(now: SystemClock().monotonicNanoseconds())
        }
        guard let wait else { return nil }
        limited.add(1, ordering: .relaxed)
        return RateLimit.tooManyRequests(retryAfterNanoseconds: wait)
    }

    /// The `http_server_config.headers` in force.
    public var responseHeaders: [(String, String)] { current.withLock { $0.responseHeaders } }

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
        let replacement = Current(config)
        current.withLock { current in
            var next = replacement
            // An unchanged rate limit keeps its bucket: a reload must not hand out a fresh burst.
            if current.config.rateLimit == config.rateLimit { next.bucket = current.bucket }
            current = next
        }
        succeeded()
        logger.info(
            "Web config reloaded",
            metadata: [
                "file": "\(path)", "users": .stringConvertible(config.basicAuthUsers.count),
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

/// The web config's own series: the outcome of the latest load of `--web.config.file`, exported as
/// `taskwatch_web_config_last_reload_successful` and `..._last_reload_success_timestamp_seconds`, the
/// names Prometheus and Alertmanager use for their own config, so a failed certificate rotation can
/// alert before the old certificate expires; and what `rate_limit` turned away.
public struct WebConfigStatus: Sendable, Equatable {
    /// Whether the latest load (at start, on SIGHUP or after a change) is in force.
    public var lastReloadSuccessful: Bool
    /// Unix time of the latest load that is in force.
    public var lastSuccessSeconds: Double
    /// Requests `rate_limit` turned away since the daemon started.
    public var requestsLimited: UInt64 = 0

    public init(lastReloadSuccessful: Bool, lastSuccessSeconds: Double) {
        self.lastReloadSuccessful = lastReloadSuccessful
        self.lastSuccessSeconds = lastSuccessSeconds
    }
}
