import Synchronization

/// HTTP connections accepted, closed, evicted and refused: `taskwatch_http_connections_accepted_total`,
/// `taskwatch_http_connections_closed_total{answered}`, `taskwatch_http_connections_evicted_total` and
/// `taskwatch_http_connections_refused_total`.
///
/// A connection closed before any request on it was answered never shows in
/// `taskwatch_http_requests_total`: a failed TLS handshake, a request libmicrohttpd refused on its own
/// (malformed, headers or URI too large), a client that sent nothing before the connection timeout, or
/// one turned away at the connection limit. These counters make them visible; accepted minus closed is
/// the connections open now. The names follow Prometheus's own listener counters
/// (`net_conntrack_listener_conn_accepted_total`, `..._closed_total`).
///
/// The server's connection limit (`--web.max-connections`) counts the open connections here, so one
/// instance belongs to one server.
public final class HTTPConnectionCounts: Sendable {
    /// The counters at one moment.
    public struct Snapshot: Sendable, Equatable {
        public var accepted: UInt64
        /// Closed after at least one answer from the server.
        public var closedAnswered: UInt64
        /// Closed before any answer from the server.
        public var closedUnanswered: UInt64
        /// Closed on arrival, unread, because the connection limit was reached; also counted in
        /// `accepted` and `closedUnanswered`.
        public var refused: UInt64 = 0
        /// Closed by the server at the connection limit to make room for a new one (see
        /// `HTTPConnectionTable`); also counted in the closed counts once libmicrohttpd has closed them.
        public var evicted: UInt64 = 0

        /// Connections accepted and not yet closed.
        public var open: UInt64 { accepted &- closedAnswered &- closedUnanswered }
    }

    private let acceptedCount = Atomic<UInt64>(0)
    private let closedAnsweredCount = Atomic<UInt64>(0)
    private let closedUnansweredCount = Atomic<UInt64>(0)
    private let refusedCount = Atomic<UInt64>(0)
    private let evictedCount = Atomic<UInt64>(0)

    public init() {}

    func accepted() { acceptedCount.add(1, ordering: .relaxed) }

    func closed(answered: Bool) {
        if answered {
            closedAnsweredCount.add(1, ordering: .releasing)
        } else {
            closedUnansweredCount.add(1, ordering: .releasing)
        }
    }

    /// A connection closed on arrival at the connection limit; it is counted as accepted and closed too.
    func refused() { refusedCount.add(1, ordering: .relaxed) }

    /// An open connection shut down at the connection limit to make room for a new one.
    func evicted() { evictedCount.add(1, ordering: .relaxed) }

    /// Connections accepted and not yet closed. May be more than the true figure while a close is being
    /// counted, never less.
    var open: UInt64 { snapshot().open }

    /// Reads the closed counts before the accepted one: a connection is accepted before it closes, so
    /// `open` never goes below zero.
    public func snapshot() -> Snapshot {
        let closedAnswered = closedAnsweredCount.load(ordering: .acquiring)
        let closedUnanswered = closedUnansweredCount.load(ordering: .acquiring)
        return Snapshot(
            accepted: acceptedCount.load(ordering: .acquiring), closedAnswered: closedAnswered,
            closedUnanswered: closedUnanswered, refused: refusedCount.load(ordering: .relaxed),
            evicted: evictedCount.load(ordering: .relaxed))
    }
}
