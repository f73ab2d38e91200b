import CTaskWatchSocket
import Glibc
import Synchronization
import TaskWatchWire

/// Accepts ingest connections and hands every message to an `IngestSink`, on one dedicated thread.
///
/// The thread runs a level-triggered epoll loop over the listening socket, every client socket and an
/// eventfd used to wake it for `stop()`. Each wakeup reads at most `Options.messagesPerWakeup` messages
/// per connection, so a flooding client waits its turn instead of starving the others. All sink calls
/// happen on this thread, in order; `tick` receives `CLOCK_MONOTONIC` nanoseconds.
///
/// When `accept` fails for lack of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the
/// listener stops accepting for `Options.acceptBackoff`, leaving waiting clients in the kernel's
/// backlog, and counts the failure in `acceptFailures`. The sink never sees those clients, so the
/// daemon reads `acceptFailures` at scrape time to export it.
///
/// For a socket it bound itself, the listener checks every `Options.socketCheckInterval` that the path
/// still names that socket. If the file is gone (tmpfiles aging `/tmp/taskwatch-$UID`, a stray `rm`),
/// no new client could connect, so it binds a new socket at the path through `IngestSocket.bind`'s
/// checks, serves it in the old one's place and closes the old one; connections already open stay. If
/// the path names something else, that is left alone. Either way `socketFileChanged` hears of it.
///
/// Sendable because its only mutable state is behind `Mutex` and `Atomic`, and the non-Sendable sink
/// is touched by the listener thread alone: `start()` hands it over, `stop()` joins the thread.
public final class IngestListener: @unchecked Sendable {
    /// Tuning knobs; the defaults suit production.
    public struct Options: Sendable {
        /// The longest time between two `tick` calls.
        public var tickInterval: Duration
        /// Messages read from one connection before moving on to the next.
        public var messagesPerWakeup: Int
        /// Connections accepted before reading again, so a connection storm cannot stall reading.
        public var acceptsPerWakeup: Int
        /// How long to stop accepting after running out of descriptors or memory.
        public var acceptBackoff: Duration
        /// How long a new connection has to say hello before the sink is asked whether to close it.
        /// Checked at ticks, so it may take up to one `tickInterval` more. A hello queued by then counts
        /// even if the listener had not read it yet: the connection is read before the sink is asked.
        public var helloTimeout: Duration
        /// How often to check that the socket's path still names the socket bound there (one `lstat`).
        /// Checked at ticks, so it may take up to one `tickInterval` more.
        public var socketCheckInterval: Duration

        public init(
            tickInterval: Duration = IngestListener.tickInterval,
            messagesPerWakeup: Int = 64,
            acceptsPerWakeup: Int = 256,
            acceptBackoff: Duration = .milliseconds(100),
            helloTimeout: Duration = .seconds(5),
            socketCheckInterval: Duration = .seconds(1)
        ) {
            self.tickInterval = tickInterval
            self.messagesPerWakeup = max(1, messagesPerWakeup)
            self.acceptsPerWakeup = max(1, acceptsPerWakeup)
            self.acceptBackoff = acceptBackoff
            self.helloTimeout = helloTimeout
            self.socketCheckInterval = socketCheckInterval
        }
    }

    /// What the listener found at its socket's path, for the daemon to log as a warning. Each is
    /// reported once, until the path changes again.
    public enum SocketFileEvent: Sendable, Equatable, CustomStringConvertible {
        /// The file was gone; a new socket listens at the path now, and connections already open stay.
        case recreated(path: String)
        /// The file was gone and a new one could not be bound; tried again at every check.
        case recreateFailed(path: String, reason: String)
        /// The path names something other than the socket bound there (`what`, such as "another
        /// socket"), which is left alone: clients connecting there do not reach this listener.
        case occupied(path: String, what: String)
        /// The path could not be checked.
        case uncheckable(path: String, reason: String)

        public var path: String {
            switch self {
            case .recreated(let path), .recreateFailed(let path, _), .occupied(let path, _),
                .uncheckable(let path, _):
                path
            }
        }

        public var description: String {
            switch self {
            case .recreated:
                "The ingest socket file was removed; listening on a new one at the same path "
                    + "(connections already open are kept)"
            case .recreateFailed(_, let reason):
                "The ingest socket file was removed and cannot be bound again, so no client can connect; "
                    + "retrying every check: \(reason)"
            case .occupied(_, let what):
                "The ingest socket path now holds \(what), not this daemon's socket; leaving it alone, "
                    + "so clients connecting there do not reach this daemon"
            case .uncheckable(_, let reason):
                "Cannot check the ingest socket file: \(reason)"
            }
        }
    }

    /// The default longest time between two `tick` calls.
    public static let tickInterval: Duration = .milliseconds(100)
    /// One byte more than the largest frame, so that a message over the limit always shows as either
    /// oversize (exactly one byte over) or truncated.
    public static let receiveCapacity = Wire.maxFrameSize + 1

    private enum State {
        case idle
        case running(pthread_t)
        case stopped
    }

    /// Replaced by the listener thread when it binds the path again; read elsewhere only by
    /// `listeningSocket`, and by `stop()` and `deinit` when the thread never ran.
    private let socket: Mutex<IngestSocket>
    private let sink: any IngestSink
    private let options: Options
    private let epollFD: Int32
    private let wakeFD: Int32
    private let state = Mutex(State.idle)
    private let stopRequested = Atomic(false)
    private let acceptFailureCount = Atomic<UInt64>(0)
    private let acceptFailed: (@Sendable (_ errno: Int32) -> Void)?
    private let socketFileChanged: (@Sendable (SocketFileEvent) -> Void)?

    /// Accept calls that failed for a reason other than a client giving up; readable from any thread.
    public var acceptFailures: UInt64 { acceptFailureCount.load(ordering: .relaxed) }

    /// The socket being served (a new one once the listener has bound its path again).
    public var listeningSocket: IngestSocket { socket.withLock { $0 } }

    /// Stamped by the listener thread on every turn of its loop, at least every `tickInterval`.
    public let heartbeat = Heartbeat()

    /// Prepares a listener for `socket`; nothing is accepted until `start()`. From here on the listener
    /// owns the socket and closes it in `stop()`. `acceptFailed` hears, on the listener thread, of each
    /// failure counted in `acceptFailures`, with its errno: the sink never sees those clients, so this
    /// is how the daemon can log them. `socketFileChanged` hears, on the listener thread, what the
    /// socket file checks found (see `SocketFileEvent`).
    public init(
        socket: IngestSocket, sink: any IngestSink, options: Options = Options(),
        acceptFailed: (@Sendable (_ errno: Int32) -> Void)? = nil,
        socketFileChanged: (@Sendable (SocketFileEvent) -> Void)? = nil
    ) throws(IngestSocketError) {
        let epollFD = tw_epoll_create()
        guard epollFD >= 0 else { throw IngestSocketError("cannot create an epoll instance", errno: errno) }
        let wakeFD = tw_eventfd_create()
        guard wakeFD >= 0 else {
            let code = errno
            _ = close(epollFD)
            throw IngestSocketError("cannot create an eventfd", errno: code)
        }
        self.socket = Mutex(socket)
        self.sink = sink
        self.options = options
        self.acceptFailed = acceptFailed
        self.socketFileChanged = socketFileChanged
        self.epollFD = epollFD
        self.wakeFD = wakeFD
    }

    deinit {
        // The running thread holds a reference, so reaching here means it has ended or never began.
        if case .idle = state.withLock({ $0 }) { socket.withLock { $0 }.close() }
        _ = close(epollFD)
        _ = close(wakeFD)
    }

    /// Starts the listener thread. Calling it again, or after `stop()`, does nothing.
    public func start() throws(IngestSocketError) {
        let result: Result<Void, IngestSocketError> = state.withLock { state in
            guard case .idle = state else { return .success(()) }
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let code = pthread_create(
                &thread, nil,
                { context in
                    let listener = Unmanaged<IngestListener>.fromOpaque(context!).takeRetainedValue()
                    listener.run()
                    return nil
                }, context)
            guard code == 0 else {
                Unmanaged<IngestListener>.fromOpaque(context).release()
                return .failure(IngestSocketError("cannot start the ingest thread", errno: code))
            }
            state = .running(thread)
            return .success(())
        }
        try result.get()
    }

    /// Stops accepting, closes every connection (calling `connectionClosed` for each), closes the
    /// listening socket, removes its file if this process created it, and waits for the thread to end.
    ///
    /// Safe to call from any thread and more than once. Called from a sink callback it only requests
    /// the stop, since the thread cannot wait for itself.
    public func stop() {
        let previous = state.withLock { state in
            defer { state = .stopped }
            return state
        }
        switch previous {
        case .idle:
            socket.withLock { $0 }.close()
        case .stopped:
            return
        case .running(let thread):
            stopRequested.store(true, ordering: .releasing)
            _ = tw_eventfd_signal(wakeFD)
            if pthread_equal(thread, pthread_self()) == 0 {
                pthread_join(thread, nil)
            } else {
                // Nobody will join a thread that stopped itself; detaching releases it when it ends.
                pthread_detach(thread)
            }
        }
    }

    private func run() {
        tw_thread_set_name("tw-ingest")
        let loop = EventLoop(
            listener: listeningSocket.fd,
            epollFD: epollFD,
            wakeFD: wakeFD,
            sink: sink,
            options: options,
            heartbeat: heartbeat
        )
        var reported: SocketFileEvent?
        loop.run(
            stopRequested: { self.stopRequested.load(ordering: .acquiring) },
            acceptFailed: noteAcceptFailure,
            checkSocketFile: { checkSocketFile(loop: loop, reported: &reported) }
        )
        // Listener first, so no client queues up in the backlog while the others are closed.
        let socket = listeningSocket
        _ = tw_epoll_remove(epollFD, socket.fd)
        socket.close()
        loop.closeAll()
    }

    private func noteAcceptFailure(_ code: Int32) {
        acceptFailureCount.add(1, ordering: .relaxed)
        acceptFailed?(code)
    }

    /// Binds the socket's path again if its file is gone; reports what it found unless `reported`
    /// already says so. On the listener thread.
    private func checkSocketFile(loop: EventLoop, reported: inout SocketFileEvent?) {
        let current = listeningSocket
        guard let state = current.fileState(), let path = current.path else { return }
        let event: SocketFileEvent
        switch state {
        case .ours:
            reported = nil
            return
        case .missing:
            do {
                let fresh = try current.rebound()
                loop.replaceListener(with: fresh.fd, acceptFailed: noteAcceptFailure)
                socket.withLock { $0 = fresh }
                // Not `close()`: the path is the new socket's now.
                current.closeDescriptor()
                event = .recreated(path: path)
            } catch {
                event = .recreateFailed(path: path, reason: error.description)
            }
        case .other(let what):
            event = .occupied(path: path, what: what)
        case .unknown(let code):
            event = .uncheckable(path: path, reason: String(cString: strerror(code)))
        }
        guard event != reported else { return }
        socketFileChanged?(event)
        // A recreated socket is ours again: whatever happens to it next is news.
        reported = if case .recreated = event { nil } else { event }
    }
}

/// The listener thread's state. Never leaves that thread.
private final class EventLoop {
    private static let wakeToken: UInt64 = 0
    private static let listenerToken: UInt64 = .max
    private static let maxEvents: Int32 = 256
    /// Messages taken per system call. One `recv` per frame was most of what a small frame cost the
    /// daemon; `recvmmsg` pays the call once for up to this many. The buffers it needs are virtual
    /// memory until a message fills them: small frames touch one page each.
    private static let batchSize = Int(TW_RECV_BATCH_MAX)

    private var listener: Int32
    private let epollFD: Int32
    private let wakeFD: Int32
    private let sink: any IngestSink
    private let options: Options
    private let heartbeat: Heartbeat
    /// The sink's `peerGroupsOfInterest`: empty, and a peer's supplementary groups are never read.
    private let groupsOfInterest: Set<UInt32>
    /// `batchSize` receive buffers of `IngestListener.receiveCapacity` bytes each, back to back, and
    /// each one's length and truncation as `tw_recv_messages` reports them.
    private let buffers: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    private let truncated: UnsafeMutablePointer<Int32>
    /// Keyed by connection id rather than fd, so a stale event for a closed fd whose number was
    /// reused within the same batch finds nothing instead of the new connection.
    private var connections: [UInt64: Int32] = [:]
    private var nextID: UInt64 = 1
    private var acceptResumesAt: UInt64?
    /// Connections whose hello deadline is still to come, in accept order, which is deadline order.
    private var helloDeadlines: [(deadline: UInt64, token: UInt64)] = []
    private var helloDeadlinesHead = 0

    typealias Options = IngestListener.Options

    init(
        listener: Int32, epollFD: Int32, wakeFD: Int32, sink: any IngestSink, options: Options, heartbeat: Heartbeat
    ) {
        self.listener = listener
        self.heartbeat = heartbeat
        self.epollFD = epollFD
        self.wakeFD = wakeFD
        self.sink = sink
        self.options = options
        self.groupsOfInterest = sink.peerGroupsOfInterest
        self.buffers = .allocate(byteCount: Self.batchSize * IngestListener.receiveCapacity, alignment: 16)
        self.lengths = .allocate(capacity: Self.batchSize)
        self.truncated = .allocate(capacity: Self.batchSize)
    }

    deinit {
        buffers.deallocate()
        lengths.deallocate()
        truncated.deallocate()
    }

    func run(stopRequested: () -> Bool, acceptFailed: (_ errno: Int32) -> Void, checkSocketFile: () -> Void) {
        register(wakeFD, token: Self.wakeToken)
        register(listener, token: Self.listenerToken)
        let tickNanoseconds = max(1_000_000, nanoseconds(options.tickInterval))
        let socketCheckNanoseconds = nanoseconds(options.socketCheckInterval)
        var nextTick = monotonicNanoseconds() + tickNanoseconds
        var nextSocketCheck = nextTick
        var events = [tw_poll_event](repeating: tw_poll_event(), count: Int(Self.maxEvents))

        while !stopRequested() {
            heartbeat.beat()
            var now = monotonicNanoseconds()
            var deadline = nextTick
            if let resume = acceptResumesAt { deadline = min(deadline, resume) }
            let timeout = deadline > now ? Int32(clamping: (deadline - now + 999_999) / 1_000_000) : 0
            let count = events.withUnsafeMutableBufferPointer {
                tw_epoll_wait(epollFD, $0.baseAddress, Self.maxEvents, timeout)
            }
            if count < 0 && errno != EINTR { break }
            for index in 0..<Int(max(count, 0)) {
                let event = events[index]
                switch event.token {
                case Self.wakeToken:
                    tw_eventfd_drain(wakeFD)
                case Self.listenerToken:
                    acceptConnections(acceptFailed: acceptFailed)
                case let token:
                    serve(token, hangup: event.hangup != 0)
                    // A round serves up to `maxEvents` connections of up to 64 frames each: seconds under a
                    // flood of large frames (a debug build's estimate neared the 15 s stall limit). Each
                    // connection served is progress, so a busy thread is not taken for a stalled one.
                    heartbeat.beat()
                }
                if stopRequested() { return }
            }
            now = monotonicNanoseconds()
            if let resume = acceptResumesAt, now >= resume {
                acceptResumesAt = nil
                register(listener, token: Self.listenerToken)
            }
            if now >= nextTick {
                sink.tick(nowNanoseconds: now)
                closeSilentConnections(now: now)
                nextTick = now + tickNanoseconds
                if now >= nextSocketCheck {
                    checkSocketFile()
                    nextSocketCheck = now + socketCheckNanoseconds
                }
            }
        }
    }

    /// Serves `fd` as the listening socket in place of the current one, which the caller then closes.
    /// Clients already waiting in the old one's backlog get a round of accepts first, so that closing it
    /// cuts off as few as possible.
    func replaceListener(with fd: Int32, acceptFailed: (_ errno: Int32) -> Void) {
        if acceptResumesAt == nil { acceptConnections(acceptFailed: acceptFailed) }
        _ = tw_epoll_remove(epollFD, listener)
        listener = fd
        // While accepting is paused, or if epoll cannot take it now, resuming registers it.
        if acceptResumesAt == nil && !register(listener, token: Self.listenerToken) {
            acceptResumesAt = monotonicNanoseconds() + nanoseconds(options.acceptBackoff)
        }
    }

    /// Closes every connection, oldest first, telling the sink about each.
    func closeAll() {
        for token in connections.keys.sorted() { closeConnection(token) }
    }

    private func acceptConnections(acceptFailed: (_ errno: Int32) -> Void) {
        for _ in 0..<options.acceptsPerWakeup {
            let fd = tw_accept(listener)
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EINTR, ECONNABORTED:
                    // The client gave up before we got to it, or a signal interrupted: nothing is wrong.
                    continue
                case let code:
                    // Out of descriptors or memory, most likely; retrying at once would spin, since
                    // the listener stays readable.
                    acceptFailed(code)
                    pauseAccepting()
                    return
                }
            }
            var raw = tw_peer_credentials()
            guard tw_peer_credentials_get(fd, &raw) == 0 else {
                acceptFailed(errno)
                _ = close(fd)
                continue
            }
            let token = nextID
            nextID += 1
            var groups: [UInt32] = []
            if !groupsOfInterest.isEmpty, let member = Self.peerGroup(fd, in: groupsOfInterest) { groups = [member] }
            let peer = PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid, groups: groups)
            guard sink.connectionOpened(ConnectionID(token), peer: peer) else {
                _ = close(fd)
                continue
            }
            connections[token] = fd
            if !register(fd, token: token) {
                closeConnection(token)
                continue
            }
            helloDeadlines.append((monotonicNanoseconds() + nanoseconds(options.helloTimeout), token))
        }
    }

    /// The first of the peer's supplementary groups that is in `wanted`; nil when none is, or when the
    /// kernel cannot tell (before Linux 4.13). The list itself is dropped here.
    private static func peerGroup(_ fd: Int32, in wanted: Set<UInt32>) -> UInt32? {
        var capacity = 32
        while true {
            var groups = [UInt32](repeating: 0, count: capacity)
            let count = groups.withUnsafeMutableBufferPointer {
                tw_peer_groups_get(fd, $0.baseAddress, Int32(capacity))
            }
            if count < 0 { return nil }
            // NGROUPS_MAX is 65536, so this asks at most twice.
            if Int(count) <= capacity { return groups.prefix(Int(count)).first { wanted.contains($0) } }
            capacity = Int(count)
        }
    }

    /// Asks the sink about every connection whose hello deadline has passed, and closes those it says
    /// to close. Connections already gone are skipped.
    ///
    /// Each one's queue is read first: while other connections' frames keep the loop busy, a hello can
    /// sit unread past the deadline (a round of 256 connections at 64 frames each can take seconds), and
    /// a client that did say hello in time must not be closed for the daemon's delay. Once in each
    /// connection's life, and one `recvmmsg` when nothing is queued, as for a client that never said
    /// hello, which is still closed.
    private func closeSilentConnections(now: UInt64) {
        while helloDeadlinesHead < helloDeadlines.count, helloDeadlines[helloDeadlinesHead].deadline <= now {
            let token = helloDeadlines[helloDeadlinesHead].token
            helloDeadlinesHead += 1
            guard connections[token] != nil else { continue }
            serve(token, hangup: false)
            // As in a round: connections accepted in one burst reach their deadlines in one sweep, and
            // under the flood that delays hellos each may have 64 frames to read here.
            heartbeat.beat()
            if connections[token] != nil, sink.helloDeadlinePassed(ConnectionID(token)) { closeConnection(token) }
        }
        // Compacted in batches, so each entry is moved O(1) times.
        if helloDeadlinesHead > 64, helloDeadlinesHead * 2 > helloDeadlines.count {
            helloDeadlines.removeFirst(helloDeadlinesHead)
            helloDeadlinesHead = 0
        }
    }

    private func pauseAccepting() {
        _ = tw_epoll_remove(epollFD, listener)
        acceptResumesAt = monotonicNanoseconds() + nanoseconds(options.acceptBackoff)
    }

    private func serve(_ token: UInt64, hangup: Bool) {
        guard let fd = connections[token] else { return }
        let id = ConnectionID(token)
        let capacity = IngestListener.receiveCapacity
        var budget = options.messagesPerWakeup
        while budget > 0 {
            let asked = min(budget, Self.batchSize)
            let received = Int(tw_recv_messages(fd, buffers, capacity, UInt32(asked), lengths, truncated))
            if received < 0 {
                if errno == EINTR { continue }
                // Nothing left to read; a hang-up or error with nothing left means the peer is gone.
                if (errno == EAGAIN || errno == EWOULDBLOCK) && !hangup { return }
                closeConnection(token)
                return
            }
            for index in 0..<received {
                // End of stream. (A zero-length message reads the same; the protocol forbids them.)
                guard lengths[index] > 0 else {
                    closeConnection(token)
                    return
                }
                let bytes = UnsafeRawBufferPointer(
                    start: buffers + index * capacity, count: min(lengths[index], capacity))
                if sink.frameReceived(id, bytes: bytes, truncated: truncated[index] != 0) == .disconnect {
                    closeConnection(token)
                    return
                }
            }
            if received == 0 {
                closeConnection(token)
                return
            }
            budget -= received
            // Fewer than asked for: the queue is empty for now, and epoll (level-triggered) reports the
            // next message. After a hang-up, read on to the end of the stream instead.
            if received < asked && !hangup { return }
        }
    }

    private func closeConnection(_ token: UInt64) {
        guard let fd = connections.removeValue(forKey: token) else { return }
        _ = tw_epoll_remove(epollFD, fd)
        _ = close(fd)
        sink.connectionClosed(ConnectionID(token))
    }

    @discardableResult
    private func register(_ fd: Int32, token: UInt64) -> Bool {
        tw_epoll_add(epollFD, fd, token) == 0
    }
}

private func monotonicNanoseconds() -> UInt64 { SystemClock().monotonicNanoseconds() }

private func nanoseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    guard seconds >= 0 else { return 0 }
    return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
}
