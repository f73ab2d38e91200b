import CTaskWatchSocket
import Glibc
import Synchronization

/// Accepts connections on the HTTP listening sockets, on a thread of its own, and hands each one on.
///
/// Why the server does not let libmicrohttpd accept: a certificate change replaces one set of
/// libmicrohttpd daemons with another. A daemon that accepts for itself can still be inside `accept()`
/// when `MHD_quiesce_daemon` returns, which no call waits for, so a connection could land on a daemon
/// about to be stopped and be closed unserved. With one acceptor, handing over is the only way in, and
/// the server swaps daemons between two hand-overs.
final class HTTPAcceptor: Sendable {
    /// How long accepting pauses after a failure for lack of descriptors or memory: the sockets stay
    /// readable, so retrying at once would spin.
    static let pauseAfterFailure: Duration = .milliseconds(100)
    private static let wakeToken: UInt64 = .max

    private enum State {
        case idle
        case running(pthread_t)
        case stopped
    }

    private let sockets: [Int32]
    private let handOver: @Sendable (Int32) -> Void
    private let acceptFailed: @Sendable (Int32) -> Void
    private let epollFD: Int32
    private let wakeFD: Int32
    private let state = Mutex(State.idle)
    private let stopRequested = Atomic(false)
    /// Stamped on every turn of the accepting loop, which turns at least once a second.
    let heartbeat = Heartbeat()

    /// - Parameters:
    ///   - sockets: listening sockets, made non-blocking here; the caller keeps ownership.
    ///   - handOver: receives each accepted socket (non-blocking, close-on-exec) and owns it from then.
    ///   - acceptFailed: called with `errno` when accepting fails for a reason other than a client
    ///     giving up; accepting then pauses for `pauseAfterFailure`.
    init(
        sockets: [Int32], handOver: @escaping @Sendable (Int32) -> Void,
        acceptFailed: @escaping @Sendable (Int32) -> Void
    ) throws(HTTPServer.StartError) {
        let epollFD = tw_epoll_create()
        guard epollFD >= 0 else { throw Self.error("cannot create an epoll instance") }
        let wakeFD = tw_eventfd_create()
        guard wakeFD >= 0 else {
            let error = Self.error("cannot create an eventfd")
            close(epollFD)
            throw error
        }
        self.sockets = sockets
        self.handOver = handOver
        self.acceptFailed = acceptFailed
        self.epollFD = epollFD
        self.wakeFD = wakeFD
        for fd in sockets {
            let flags = fcntl(fd, F_GETFL)
            if flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 {
                throw Self.error("cannot make socket \(fd) non-blocking")
            }
        }
        guard tw_epoll_add(epollFD, wakeFD, Self.wakeToken) == 0, watchSockets() else {
            throw Self.error("cannot watch the listening sockets")
        }
    }

    deinit {
        close(epollFD)
        close(wakeFD)
    }

    /// Starts the accepting thread.
    func start() throws(HTTPServer.StartError) {
        let code: Int32 = state.withLock { state in
            guard case .idle = state else { return 0 }
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let code = pthread_create(
                &thread, nil,
                { context in
                    Unmanaged<HTTPAcceptor>.fromOpaque(context!).takeRetainedValue().run()
                    return nil
                }, context)
            if code != 0 {
                Unmanaged<HTTPAcceptor>.fromOpaque(context).release()
                return code
            }
            state = .running(thread)
            return 0
        }
        if code != 0 {
            throw HTTPServer.StartError(description: "cannot start the HTTP accept thread: \(describe(code))")
        }
    }

    /// Stops accepting and returns once the thread has ended, so nothing is handed over after it.
    /// Safe to call more than once.
    func stop() {
        let previous = state.withLock { state in
            defer { state = .stopped }
            return state
        }
        guard case .running(let thread) = previous else { return }
        stopRequested.store(true, ordering: .releasing)
        _ = tw_eventfd_signal(wakeFD)
        pthread_join(thread, nil)
    }

    private func run() {
        tw_thread_set_name("tw-http-accept")
        let capacity: Int32 = 16
        var events = [tw_poll_event](repeating: tw_poll_event(), count: Int(capacity))
        var resumeAt: ContinuousClock.Instant?
        let clock = ContinuousClock()
        while !stopRequested.load(ordering: .acquiring) {
            heartbeat.beat()
            // Woken at least once a second, so the heartbeat shows this thread is not stuck.
            var timeout: Int32 = 1_000
            if let resumeAt {
                let left = clock.now.duration(to: resumeAt)
                let (seconds, attoseconds) = left.components
                timeout =
                    left > .zero
                    ? min(1_000, Int32(clamping: seconds * 1_000 + attoseconds / 1_000_000_000_000_000 + 1)) : 0
            }
            let count = events.withUnsafeMutableBufferPointer {
                tw_epoll_wait(epollFD, $0.baseAddress, capacity, timeout)
            }
            if count < 0 && errno != EINTR { return }
            for event in events.prefix(Int(max(count, 0))) {
                if event.token == Self.wakeToken {
                    tw_eventfd_drain(wakeFD)
                } else if resumeAt == nil, let failure = acceptAll(from: sockets[Int(event.token)]) {
                    acceptFailed(failure)
                    // Level-triggered: a socket left in the set would wake the loop at once, forever.
                    for fd in sockets { _ = tw_epoll_remove(epollFD, fd) }
                    resumeAt = clock.now.advanced(by: Self.pauseAfterFailure)
                }
            }
            if let pausedUntil = resumeAt, clock.now >= pausedUntil {
                resumeAt = nil
                if !watchSockets() {
                    // Out of kernel memory for epoll: try again after another pause rather than stop
                    // accepting for good.
                    acceptFailed(errno)
                    resumeAt = clock.now.advanced(by: Self.pauseAfterFailure)
                }
            }
        }
    }

    /// Accepts what is queued on `fd`, up to a batch so one busy socket cannot starve the others.
    /// Returns `errno` of a failure that should pause accepting, or nil.
    private func acceptAll(from fd: Int32) -> Int32? {
        for _ in 0..<64 {
            let client = tw_accept(fd)
            if client >= 0 {
                handOver(client)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK: return nil
            // The client gave up before it was accepted, or a signal interrupted: nothing is wrong.
            case EINTR, ECONNABORTED, EPROTO: continue
            case let failure: return failure
            }
        }
        return nil
    }

    /// Adds every listening socket to the epoll set; one already there (a retry after a partial
    /// failure) counts as added.
    private func watchSockets() -> Bool {
        sockets.indices.allSatisfy { tw_epoll_add(epollFD, sockets[$0], UInt64($0)) == 0 || errno == EEXIST }
    }

    private static func error(_ what: String) -> HTTPServer.StartError {
        HTTPServer.StartError(description: "\(what): \(describe(errno))")
    }
}

private func describe(_ code: Int32) -> String { String(cString: strerror(code)) }
