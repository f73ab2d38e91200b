import Glibc
import HeapModule
import Synchronization

/// The HTTP connections the server has open, so that at `--web.max-connections` a new connection can
/// take the place of the one least likely to be a scrape, instead of being turned away.
///
/// Why: refusing at the limit let one client that holds every place (opening connections and
/// trickling a header byte within each idle timeout) keep Prometheus out for as long as it went on.
/// A scrape sends its whole request at once and is answered within milliseconds, so the connections
/// worth keeping are those with a request in progress. The place goes to the newcomer from, in order:
/// 1. the oldest connection without a request in progress (a request still arriving, a TLS handshake,
///    an idle keep-alive connection; Prometheus opens a new one at its next scrape);
/// 2. the one whose request has been in progress longest, once that is `busyGrace` or longer (a client
///    reading its answer a byte at a time).
///
/// A connection is closed with `shutdown(2)`: libmicrohttpd keeps its descriptor and reads the end of
/// the stream, so its own close path runs and nothing is closed twice. Entries are keyed by
/// descriptor. libmicrohttpd reports a close (`closed`) before it closes the descriptor, and the
/// shutdown happens under the same lock, so the descriptor still names the same connection; the socket's
/// inode, recorded when it was opened, is checked as well, so an entry whose close was never reported
/// can never shut down a socket that has since reused its number.
///
/// Choosing costs O(log n) in the open connections, amortized, not a scan of them: the candidates of
/// each kind wait in a heap, and a heap mark that no longer matches its connection (closed, busy again,
/// evicted) is dropped when it reaches the top. Why it matters: eviction runs on the accept thread for
/// every new connection past the limit, during exactly the floods it is there for, and the limit goes up
/// to a million.
final class HTTPConnectionTable: Sendable {
    /// How many evicted connections may be waiting for libmicrohttpd to close them. Past it, a new
    /// connection is refused: a flood of new connections cannot push the descriptors open further past
    /// the limit than this.
    static let maxPendingEvictions = 64
    /// How long a request must have been in progress before its connection may make room: a scrape of a
    /// million series is answered in well under this, a client reading a byte at a time is not.
    static let busyGrace: Duration = .seconds(2)

    private struct Entry {
        var inode: ino_t
        var device: dev_t
        /// When the connection was opened, as a sequence number: smaller is older. Also tells this
        /// connection's heap marks from those of an earlier connection on the same descriptor.
        var order: UInt64
        /// When the request in progress started; nil between requests.
        var busySince: ContinuousClock.Instant?
        var evicting = false
    }

    /// A connection without a request in progress, as it was when the mark was made.
    private struct IdleMark: Comparable {
        var order: UInt64
        var fd: Int32
        static func < (a: Self, b: Self) -> Bool { a.order < b.order }
    }

    /// A connection with a request in progress since `since`, as it was when the mark was made.
    private struct BusyMark: Comparable {
        var since: ContinuousClock.Instant
        var order: UInt64
        var fd: Int32
        static func < (a: Self, b: Self) -> Bool { (a.since, a.order) < (b.since, b.order) }
    }

    private struct State {
        var entries: [Int32: Entry] = [:]
        var idle = Heap<IdleMark>()
        var busy = Heap<BusyMark>()
        var nextOrder: UInt64 = 0
        var evicting = 0

        mutating func markIdle(_ fd: Int32, _ entry: Entry) {
            idle.insert(IdleMark(order: entry.order, fd: fd))
            compactIfStale()
        }

        mutating func markBusy(_ fd: Int32, _ entry: Entry, since: ContinuousClock.Instant) {
            busy.insert(BusyMark(since: since, order: entry.order, fd: fd))
            compactIfStale()
        }

        /// Marks left behind by connections that closed or changed state are dropped lazily, at the top
        /// of a heap; rebuilding both once they outnumber the connections twice over keeps the heaps'
        /// size proportional to what is open, at a constant amortized cost per mark.
        mutating func compactIfStale() {
            guard idle.count + busy.count > 2 * entries.count + 64 else { return }
            var idleMarks: [IdleMark] = []
            var busyMarks: [BusyMark] = []
            for (fd, entry) in entries where !entry.evicting {
                if let since = entry.busySince {
                    busyMarks.append(BusyMark(since: since, order: entry.order, fd: fd))
                } else {
                    idleMarks.append(IdleMark(order: entry.order, fd: fd))
                }
            }
            idle = Heap(idleMarks)
            busy = Heap(busyMarks)
        }

        /// The descriptor to shut down (see the type's comment), stale marks on the way dropped.
        mutating func candidate(at now: ContinuousClock.Instant) -> Int32? {
            while let mark = idle.min {
                if let entry = entries[mark.fd], entry.order == mark.order, entry.busySince == nil,
                    !entry.evicting
                {
                    return mark.fd
                }
                idle.removeMin()
            }
            while let mark = busy.min {
                if let entry = entries[mark.fd], entry.order == mark.order, entry.busySince == mark.since,
                    !entry.evicting
                {
                    return mark.since.duration(to: now) >= busyGrace ? mark.fd : nil
                }
                busy.removeMin()
            }
            return nil
        }
    }

    private let state = Mutex(State())

    init() {}

    /// Records a connection about to be handed to libmicrohttpd.
    func opened(_ fd: Int32) {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return }
        state.withLock { state in
            if let replaced = state.entries[fd], replaced.evicting { state.evicting -= 1 }
            let entry = Entry(inode: status.st_ino, device: status.st_dev, order: state.nextOrder)
            state.entries[fd] = entry
            state.nextOrder += 1
            state.markIdle(fd, entry)
        }
    }

    /// Forgets a connection. Called before its descriptor is closed: by libmicrohttpd's close
    /// notification, or by the server when handing it over failed.
    func closed(_ fd: Int32) {
        state.withLock { state in
            if let entry = state.entries.removeValue(forKey: fd), entry.evicting { state.evicting -= 1 }
        }
    }

    /// A request on the connection has its headers in; `now` is when.
    func requestStarted(_ fd: Int32, at now: ContinuousClock.Instant) {
        state.withLock { state in
            guard var entry = state.entries[fd] else { return }
            entry.busySince = now
            state.entries[fd] = entry
            if !entry.evicting { state.markBusy(fd, entry, since: now) }
        }
    }

    /// The request on the connection has been answered in full, or abandoned.
    func requestEnded(_ fd: Int32) {
        state.withLock { state in
            guard var entry = state.entries[fd], entry.busySince != nil else { return }
            entry.busySince = nil
            state.entries[fd] = entry
            if !entry.evicting { state.markIdle(fd, entry) }
        }
    }

    /// Shuts down `connection` so that libmicrohttpd closes it and releases the response it holds (see
    /// `HTTPResponseBudget`). Returns true when it did, or when the connection is being evicted already;
    /// false when it is closed, or its descriptor now belongs to another socket. It counts among the
    /// evictions pending, but is not held back by `maxPendingEvictions`, which bounds descriptors, not
    /// memory. `shutDown` runs when this call shut it down, not when it was on its way out already.
    func evict(_ connection: HTTPResponseBudget.Connection, shutDown: () -> Void = {}) -> Bool {
        state.withLock { state in
            let fd = connection.fd
            guard let entry = state.entries[fd], entry.inode == connection.inode, entry.device == connection.device
            else { return false }
            if entry.evicting { return true }
            var status = stat()
            guard fstat(fd, &status) == 0, status.st_ino == entry.inode, status.st_dev == entry.device else {
                // Its close was never reported: the number is free or belongs to another socket now.
                state.entries[fd] = nil
                return false
            }
            _ = shutdown(fd, Int32(SHUT_RDWR))
            state.entries[fd]?.evicting = true
            state.evicting += 1
            shutDown()
            return true
        }
    }

    /// Connections recorded and not closed, evicted ones included.
    var count: Int { state.withLock { $0.entries.count } }

    /// Heap marks held, stale ones included: for tests of the bound.
    var markCount: Int { state.withLock { $0.idle.count + $0.busy.count } }

    /// Shuts down the connection that should give its place to a new one (see the type's comment) and
    /// returns true, or returns false when none may: every connection has a request in progress for less
    /// than `busyGrace`, or `maxPendingEvictions` are still closing.
    func evictOne(at now: ContinuousClock.Instant) -> Bool {
        state.withLock { state in
            guard state.evicting < Self.maxPendingEvictions else { return false }
            while let fd = state.candidate(at: now) {
                guard let entry = state.entries[fd] else { return false }
                var status = stat()
                guard fstat(fd, &status) == 0, status.st_ino == entry.inode, status.st_dev == entry.device else {
                    // Its close was never reported: the number is free or belongs to another socket now.
                    state.entries[fd] = nil
                    continue
                }
                _ = shutdown(fd, Int32(SHUT_RDWR))
                state.entries[fd]?.evicting = true
                state.evicting += 1
                return true
            }
            return false
        }
    }
}
