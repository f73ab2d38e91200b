import Glibc
import Synchronization

/// The response bodies the server holds for connections that have not taken them yet, kept to a small
/// multiple of one body however many connections there are.
///
/// Why: libmicrohttpd holds a response until its last byte is sent, and every scrape renders a body of
/// its own (it must show the state at or after its arrival, so a body cannot be handed to a later
/// request). A client that sends `GET /metrics` and never reads pinned one whole body per connection:
/// 300 of them and a 5.6 MB exposition took the daemon from 31 MB to 1.67 GB, up to 512 connections ×
/// a body that may reach hundreds of MB. Sharing a render between requests does not help: requests
/// that arrive apart each need their own, and only `threadPoolSize` renders run at once anyway.
///
/// The rule: a body of `n` bytes is admitted while the bodies held, itself included, stay within
/// `max(minimumBytes, multiple × n)`. When it does not fit, connections whose response has been in
/// flight for `HTTPConnectionTable.busyGrace` are shut down, oldest first, until it does (their
/// bodies come back as libmicrohttpd closes them): a scrape takes its answer in milliseconds, so these
/// are clients that do not read, and a scrape that comes while they hold the budget takes their place.
/// When not enough may give way (every body held is younger than that), the request is answered 503
/// with `Retry-After`, without a body of any size. Bodies of at most `untrackedBytes` are left out:
/// the kernel's send buffer takes them at once.
///
/// Bodies held never exceed the limit by more than those of the connections shut down and not closed
/// yet, which are released as soon as a pool thread next runs: so at most about twice the limit, plus
/// a body being rendered per pool thread.
public final class HTTPResponseBudget: Sendable {
    /// How many bodies may be held, in bodies of the size of the one being admitted, with a floor.
    public struct Limits: Sendable, Equatable {
        /// Bodies held, the new one included, may add up to this many times the new one.
        public var multiple: Int
        /// ... or to this many bytes, when more, so that small bodies have room for many at once.
        public var minimumBytes: Int

        public init(multiple: Int = 4, minimumBytes: Int = 16 << 20) {
            self.multiple = multiple
            self.minimumBytes = minimumBytes
        }

        /// What the bodies held, one of `bytes` included, may add up to.
        func limit(admitting bytes: Int) -> Int {
            let (product, overflow) = multiple.multipliedReportingOverflow(by: bytes)
            return max(minimumBytes, overflow ? Int.max : product)
        }
    }

    /// Bodies this small are not counted: they fit in the socket's send buffer, so libmicrohttpd hands
    /// them to the kernel at once whether or not the client reads.
    static let untrackedBytes = 16 * 1024

    /// The connection a body is queued on, as `HTTPConnectionTable` knows it.
    struct Connection: Sendable, Equatable {
        var fd: Int32
        var inode: ino_t
        var device: dev_t
    }

    /// One body held: admitted, not yet released.
    final class Lease: @unchecked Sendable {
        // @unchecked: `released` and `evicted` are read and written only under the budget's lock.
        let bytes: Int
        let connection: Connection
        let since: ContinuousClock.Instant
        fileprivate var released = false
        /// Its connection has been shut down to make room; the body is on its way back.
        fileprivate var evicted = false

        fileprivate init(bytes: Int, connection: Connection, since: ContinuousClock.Instant) {
            self.bytes = bytes
            self.connection = connection
            self.since = since
        }
    }

    enum Admission {
        case admitted(Lease)
        /// No room: answer 503, asking the client to come back in `retryAfterSeconds`.
        case refused(retryAfterSeconds: Int)
    }

    private struct State {
        /// Bytes of the bodies admitted and not released.
        var held = 0
        /// Bytes of those whose connection was shut down to make room.
        var evicting = 0
        /// Leases in the order admitted (so by `since`); released ones are dropped lazily.
        var leases: [Lease] = []
        var live = 0
        /// Since `held` was last 0: the most held at once, and the largest body.
        var peak = 0
        var largest = 0
        /// Whether the latest request was refused: only the first of a run is logged.
        var refusing = false
    }

    let limits: Limits
    private let state = Mutex(State())

    init(limits: Limits) {
        self.limits = limits
    }

    /// Admits a body of `bytes` queued on `connection`, shutting down connections whose response has
    /// been in flight for `HTTPConnectionTable.busyGrace`, oldest first, when it does not fit.
    /// `evict` shuts one down and returns whether it did (false: that connection is already closing).
    /// `log` is called for the first refusal of a run.
    func admit(
        _ bytes: Int, on connection: Connection, at now: ContinuousClock.Instant = .now,
        evict: (Connection) -> Bool, log: ((String) -> Void)? = nil
    ) -> Admission {
        state.withLock { state in
            let limit = limits.limit(admitting: bytes)
            var excess = state.held - state.evicting + bytes - limit
            var index = 0
            while excess > 0, index < state.leases.count {
                let lease = state.leases[index]
                index += 1
                if lease.released || lease.evicted { continue }
                // Admitted in order, so none after this one has been in flight long enough either.
                guard lease.since.duration(to: now) >= HTTPConnectionTable.busyGrace else { break }
                if evict(lease.connection) {
                    lease.evicted = true
                    state.evicting += lease.bytes
                    excess -= lease.bytes
                }
            }
            if excess > 0 {
                if !state.refusing {
                    state.refusing = true
                    log?(
                        "response bodies held for clients reached \(state.held) bytes (limit \(limit) for one of "
                            + "\(bytes)): scrapes are answered 503 until earlier ones are taken or 2 s old")
                }
                return .refused(retryAfterSeconds: retryAfter(state, at: now))
            }
            state.refusing = false
            // Never earlier than the latest lease, so the list stays in order of `since`.
            let since = max(now, state.leases.last?.since ?? now)
            let lease = Lease(bytes: bytes, connection: connection, since: since)
            state.leases.append(lease)
            state.live += 1
            state.held += bytes
            state.peak = max(state.peak, state.held)
            state.largest = max(state.largest, bytes)
            return .admitted(lease)
        }
    }

    /// Whole seconds until the oldest body that could give way has been held for the grace period.
    private func retryAfter(_ state: State, at now: ContinuousClock.Instant) -> Int {
        guard let oldest = state.leases.first(where: { !$0.released && !$0.evicted }) else { return 1 }
        let left = HTTPConnectionTable.busyGrace - oldest.since.duration(to: now)
        let (seconds, attoseconds) = left.components
        return max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }

    /// The body of `lease` has been freed. Returns true when freed memory should go back to the system
    /// (`malloc_trim`): nothing is held any more, and more than one body was held at once since that was
    /// last so. One scrape at a time leaves nothing to return beyond the next render's buffer.
    func release(_ lease: Lease) -> Bool {
        state.withLock { state in
            guard !lease.released else { return false }
            lease.released = true
            state.held -= lease.bytes
            if lease.evicted { state.evicting -= lease.bytes }
            state.live -= 1
            if state.leases.count > 2 * state.live + 16 { state.leases.removeAll { $0.released } }
            guard state.held == 0 else { return false }
            let trim = state.peak > state.largest
            state.peak = 0
            state.largest = 0
            return trim
        }
    }

    /// Bytes of the bodies held now.
    var heldBytes: Int { state.withLock { $0.held } }

    /// Bytes of the bodies whose connection was shut down and that are not released yet.
    var evictingBytes: Int { state.withLock { $0.evicting } }

    /// Leases kept, released ones not dropped yet included: for tests of the bound.
    var leaseCount: Int { state.withLock { $0.leases.count } }
}
