import Synchronization

/// HTTP requests answered, by handler and status code: `taskwatch_http_requests_total{handler,code}`.
///
/// Every answer counts, refusals included (401 from basic auth, 403 for a client certificate, 429 from
/// the rate limit), so a scraper with a wrong password or a stranger probing the port shows as a
/// series. The `handler` label is one of the daemon's own paths or `other`, so requests for arbitrary
/// paths cannot grow the number of series; the codes are the few the server sends.
public final class HTTPRequestCounts: Sendable {
    /// The `handler` label of a path the daemon does not serve.
    public static let otherHandler = "other"

    /// One series: a handler label and a status code.
    public struct Key: Hashable, Sendable, Comparable {
        public var handler: String
        public var code: Int

        public static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.handler, lhs.code) < (rhs.handler, rhs.code)
        }
    }

    private let handlers: Set<String>
    private let telemetryKey: Key
    // A lock, not atomics: the key set is not known in advance, and one uncontended lock is noise
    // beside the rest of a request.
    private let counts = Mutex<[Key: UInt64]>([:])

    /// - Parameter telemetryPath: where `/metrics` is served, as `WebHandler.telemetryPath` has it.
    public init(telemetryPath: String) {
        handlers = [telemetryPath, "/", "/-/healthy", "/-/ready"]
        telemetryKey = Key(handler: telemetryPath, code: 200)
    }

    /// The `handler` label of a request for `path`.
    public func handler(forPath path: String) -> String {
        handlers.contains(path) ? path : Self.otherHandler
    }

    /// Counts one answer with `status` to a request for `path`.
    public func count(path: String, status: Int) {
        let key = Key(handler: handler(forPath: path), code: status)
        counts.withLock { $0[key, default: 0] &+= 1 }
    }

    /// Every series so far, in label order. Successful scrapes are always present, at 0 before the
    /// first, so a rate over them starts from the daemon's start.
    public func snapshot() -> [(key: Key, count: UInt64)] {
        var copy = counts.withLock { $0 }
        if copy[telemetryKey] == nil { copy[telemetryKey] = 0 }
        return copy.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
