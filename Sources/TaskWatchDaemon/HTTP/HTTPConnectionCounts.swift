import Synchronization

/// HTTP connections accepted and closed: `taskwatch_http_connections_accepted_total` and
/// `taskwatch_http_connections_closed_total{answered}`.
///
/// A connection closed before any request on it was answered never shows in
/// `taskwatch_http_requests_total`: a failed TLS handshake, a request libmicrohttpd refused on its own
/// (malformed, headers or URI too large), a client that sent nothing before the connection timeout, or
/// one turned away at the connection limit. These counters make them visible; accepted minus closed is
/// the connections open now. The names follow Prometheus's own listener counters
/// (`net_conntrack_listener_conn_accepted_total`, `..._closed_total`).
public final class HTTPConnectionCounts: Sendable {
    /// The counters at one moment.
    public struct Snapshot: Sendable, Equatable {
        public var accepted: UInt64
        /// Closed after at least one answer from the server.
        public var closedAnswered: UInt64
        /// Closed before any answer from the server.
        public var closedUnanswered: UInt64

        /// Connections accepted and not yet closed.
        public var open: UInt64 { accepted &- closedAnswered &- closedUnanswered }
    }

    private let acceptedCount = Atomic<UInt64>(0)
    private let closedAnsweredCount = Atomic<UInt64>(0)
    private let closedUnansweredCount = Atomic<UInt64>(0)

    public init() {}

    func accepted() { acceptedCount.add(1, ordering: .relaxed) }

    func closed(answered: Bool) {
        if answered {
            closedAnsweredCount.add(1, ordering: .releasing)
        } else {
            closedUnansweredCount.add(1, ordering: .releasing)
        }
    }

    /// Reads the closed counts before the accepted one: a connection is accepted before it closes, so
    /// `open` never goes below zero.
    public func snapshot() -> Snapshot {
        let closedAnswered = closedAnsweredCount.load(ordering: .acquiring)
        let closedUnanswered = closedUnansweredCount.load(ordering: .acquiring)
        return Snapshot(
            accepted: acceptedCount.load(ordering: .acquiring), closedAnswered: closedAnswered,
            closedUnanswered: closedUnanswered)
    }
}
