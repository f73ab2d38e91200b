import CMicroHTTPD
import Glibc
import Synchronization

/// An HTTP server over libmicrohttpd. This is the only place that touches the libmicrohttpd C API.
///
/// One thread (`HTTPAcceptor`) accepts on every listening socket and hands each connection to a
/// libmicrohttpd daemon with its own epoll-driven thread pool. The handler is called on those threads,
/// concurrently.
public final class HTTPServer: Sendable {
    /// How the server runs.
    public struct Options: Sendable {
        /// Listening sockets, already bound and listening. The server owns them from `init` on and
        /// closes them, also when `init` throws.
        public var listeningSockets: [Int32]
        /// Threads per listening socket that serve connections and run the handler.
        public var threadPoolSize: Int
        /// Seconds of inactivity after which a connection is closed.
        public var connectionTimeoutSeconds: Int
        /// Most connections open at once, all listening sockets together. A connection past it takes the
        /// place of an open one that is not serving a scrape (see `HTTPConnectionTable`), counted in
        /// `connections` as evicted; when there is none, it is closed on arrival, unread, and counted as
        /// refused (and closed unanswered). See `defaultConnectionLimit` for why libmicrohttpd's own limit
        /// is never reached.
        public var connectionLimit: Int
        /// Serve HTTPS instead of HTTP when set.
        public var tls: TLS?
        /// How long `stop()` waits for requests in flight before closing their connections.
        public var shutdownGracePeriod: Duration
        /// Receives libmicrohttpd's own diagnostics (a client that resets, a failed TLS handshake) and
        /// why a request was refused for its client certificate.
        public var errorLog: (@Sendable (String) -> Void)?
        /// Called with the path and status of every answer the server queues, refusals for a client
        /// certificate included; not for the errors libmicrohttpd answers on its own (a malformed
        /// request, headers too large).
        public var answered: (@Sendable (_ path: String, _ status: Int) -> Void)?
        /// Counts every connection accepted and closed, including those closed before any answer. The
        /// connection limit is checked against its open connections, so it belongs to this server alone.
        public var connections: HTTPConnectionCounts
        /// How much memory the bodies of responses not yet taken by their clients may hold, all
        /// connections together (see `HTTPResponseBudget`). A body past it takes the place of bodies
        /// held for 2 s, whose connections are shut down, or is answered 503 with `Retry-After`.
        public var responseBudget: HTTPResponseBudget.Limits

        public init(
            listeningSockets: [Int32], threadPoolSize: Int = 2, connectionTimeoutSeconds: Int = 10,
            connectionLimit: Int = HTTPServer.defaultConnectionLimit, tls: TLS? = nil,
            shutdownGracePeriod: Duration = .seconds(5),
            errorLog: (@Sendable (String) -> Void)? = nil,
            answered: (@Sendable (_ path: String, _ status: Int) -> Void)? = nil,
            connections: HTTPConnectionCounts = HTTPConnectionCounts(),
            responseBudget: HTTPResponseBudget.Limits = HTTPResponseBudget.Limits()
        ) {
            self.listeningSockets = listeningSockets
            self.threadPoolSize = threadPoolSize
            self.connectionTimeoutSeconds = connectionTimeoutSeconds
            self.connectionLimit = connectionLimit
            self.tls = tls
            self.shutdownGracePeriod = shutdownGracePeriod
            self.errorLog = errorLog
            self.answered = answered
            self.connections = connections
            self.responseBudget = responseBudget
        }
    }

    /// `--web.max-connections` by default. libmicrohttpd 0.9.75 deadlocks when its own connection limit
    /// is reached by connections handed to it with `MHD_add_connection`, as all of ours are: each pool
    /// thread blocks on a mutex it already holds ("Server reached connection limit"), serving stops for
    /// good and `MHD_stop_daemon` hangs joining them. Its default limit (FD_SETSIZE - 4, shared among the
    /// pool threads) was reached by about 1,100 idle connections. So the server enforces this limit
    /// itself, before handing over, and gives libmicrohttpd a limit it cannot reach
    /// (`libmicrohttpdConnectionLimit`). 512 is far more than the few Prometheus servers that scrape a
    /// host need, and well under the usual 1024 descriptors of a service.
    public static let defaultConnectionLimit = 512

    /// Certificate and key in PEM, the GnuTLS priority string that picks protocol versions and
    /// ciphers (for example `NORMAL:-VERS-TLS1.0:-VERS-TLS1.1`), and what clients must show.
    public struct TLS: Sendable {
        public var certificatePEM: String
        public var keyPEM: String
        public var priorities: String
        /// The CAs client certificates must chain to; clients are asked for a certificate only when set.
        public var clientCAPEM: String?
        public var clientCertificates: ClientCertificates
        /// With `.required`: the certificate must carry one of these subject alternative names; empty
        /// allows any.
        public var clientAllowedSANs: [String]

        public init(
            certificatePEM: String, keyPEM: String, priorities: String = HTTPServer.defaultPriorities,
            clientCAPEM: String? = nil, clientCertificates: ClientCertificates = .ignored,
            clientAllowedSANs: [String] = []
        ) {
            self.certificatePEM = certificatePEM
            self.keyPEM = keyPEM
            self.priorities = priorities
            self.clientCAPEM = clientCAPEM
            self.clientCertificates = clientCertificates
            self.clientAllowedSANs = clientAllowedSANs
        }
    }

    /// TLS 1.2 and 1.3 with forward-secret key exchange only: `-RSA` drops static RSA key exchange
    /// (`AES128-GCM-SHA256` and the like), which Go's crypto/tls, and so node_exporter, no longer offers
    /// and scanners flag.
    public static let defaultPriorities = "NORMAL:-RSA:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

    /// Why `certificatePEM` and `keyPEM` cannot serve TLS together, in GnuTLS's words, or nil when they
    /// can: checked when a web config is read, so that a mismatch is named there rather than as
    /// libmicrohttpd's "Failed to initialize TLS support" when the server starts.
    public static func keyPairError(certificatePEM: String, keyPEM: String) -> String? {
        let certificate = Array(certificatePEM.utf8)
        let key = Array(keyPEM.utf8)
        let message = certificate.withUnsafeBufferPointer { c in
            key.withUnsafeBufferPointer { k in
                c.withMemoryRebound(to: CChar.self) { c in
                    k.withMemoryRebound(to: CChar.self) { k in
                        tw_tls_key_pair_error(c.baseAddress, c.count, k.baseAddress, k.count)
                    }
                }
            }
        }
        return message.map { String(cString: $0) }
    }

    /// Why `pem` holds no certificate authority GnuTLS can use, or nil when it holds one.
    public static func trustError(_ pem: String) -> String? {
        let bytes = Array(pem.utf8)
        let message = bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { tw_tls_trust_error($0.baseAddress, $0.count) }
        }
        return message.map { String(cString: $0) }
    }

    /// Which client certificates a request needs. A request that lacks what the policy asks for gets
    /// 403 and its connection is closed; the handler never sees it.
    public enum ClientCertificates: Sendable, Equatable {
        /// None asked for (exporter-toolkit `NoClientCert`).
        case ignored
        /// None needed, but one that is shown must chain to `clientCAPEM` and allow client
        /// authentication (`VerifyClientCertIfGiven`).
        case verifiedIfGiven
        /// One is needed, verified the same way (`RequireAndVerifyClientCert`).
        case required
    }

    /// Why the server could not start.
    public struct StartError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// A libmicrohttpd daemon and the context its callbacks share. A TLS change starts a new
    /// generation beside the old one, makes it the one connections are handed to, then retires the old.
    private struct Generation: @unchecked Sendable {
        // @unchecked: the daemon handle crosses threads only to be handed connections and stopped,
        // which libmicrohttpd allows from any thread; each generation is stopped exactly once.
        var daemon: OpaquePointer
        var context: ServerContext
    }

    /// Shared with the acceptor's thread, which hands connections over under its lock.
    private final class Shared: Sendable {
        let state: Mutex<State>
        let connections: HTTPConnectionCounts
        /// Every generation's open connections, so one can make room at the limit.
        let table: HTTPConnectionTable
        let connectionLimit: UInt64
        let errorLog: (@Sendable (String) -> Void)?
        /// Whether the latest connection found the limit reached: only the first of a run is logged.
        /// Touched only by the acceptor's thread.
        let atLimit = Atomic(false)

        init(_ state: State, options: Options, table: HTTPConnectionTable) {
            self.state = Mutex(state)
            self.connections = options.connections
            self.table = table
            self.connectionLimit = UInt64(options.connectionLimit)
            self.errorLog = options.errorLog
        }
    }

    private struct State {
        /// The generation accepted connections go to; nil once stopped. Handing over happens under the
        /// lock, so once a generation is replaced here, nothing more reaches it.
        var current: Generation?
        var generationNumber = 1
        var sockets: [Int32]
    }

    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let table: HTTPConnectionTable
    /// Shared by every generation, like the table: a body held by a retiring one still counts.
    private let budget: HTTPResponseBudget
    private let gracePeriod: Duration
    private let shared: Shared
    private let acceptor: HTTPAcceptor
    /// The options in force. Held for the whole of a `reconfigure`, so two never interleave.
    private let options: Mutex<Options>

    /// Starts serving on every socket in `options.listeningSockets`. Returns once all are accepting.
    public init(options: Options, handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws(StartError) {
        let sockets = options.listeningSockets
        let table = HTTPConnectionTable()
        let budget = HTTPResponseBudget(limits: options.responseBudget)
        let generation: Generation
        let shared: Shared
        let acceptor: HTTPAcceptor
        do throws(StartError) {
            try Self.validate(options)
            generation = try Self.startGeneration(options: options, table: table, budget: budget, handler: handler)
            shared = Shared(State(current: generation, sockets: sockets), options: options, table: table)
            do {
                acceptor = try HTTPAcceptor(
                    sockets: sockets, handOver: { [shared] in Self.handOver($0, to: shared) },
                    acceptFailed: { [errorLog = options.errorLog] in
                        errorLog?("accepting HTTP connections paused: \(String(cString: strerror($0)))")
                    })
                try acceptor.start()
            } catch {
                // The generation's daemon has no socket of ours: stopping it is all its cleanup.
                MHD_stop_daemon(generation.daemon)
                throw error
            }
        } catch {
            for fd in sockets { close(fd) }
            throw error
        }
        self.handler = handler
        self.table = table
        self.budget = budget
        self.gracePeriod = options.shutdownGracePeriod
        self.options = Mutex(options)
        self.shared = shared
        self.acceptor = acceptor
    }

    /// Stamped by the thread that accepts connections and hands them to libmicrohttpd, at least once a
    /// second: a stuck hand-over (libmicrohttpd's lock) stops it.
    public var acceptHeartbeat: Heartbeat { acceptor.heartbeat }

    /// Gives an accepted socket to the generation in force; called on the acceptor's thread.
    private static func handOver(_ fd: Int32, to shared: Shared) {
        // The limit comes before libmicrohttpd's (see `defaultConnectionLimit`). Only this thread adds
        // connections, so the count cannot rise between the check and the hand-over; closes only lower
        // it. Every generation's connections count, a retiring one's included. An evicted connection
        // counts until libmicrohttpd has closed it, so the count can pass the limit by at most
        // `HTTPConnectionTable.maxPendingEvictions`.
        let full = shared.connections.open >= shared.connectionLimit
        shared.connections.accepted()
        if full {
            let evicted = shared.table.evictOne(at: .now)
            if !shared.atLimit.exchange(true, ordering: .relaxed) {
                shared.errorLog?(
                    "\(shared.connectionLimit) HTTP connections open (the limit): each new one takes the place of "
                        + "one without a request in progress, or is closed when there is none")
            }
            if evicted {
                shared.connections.evicted()
            } else {
                // Nothing is read or answered: a client over the limit costs one accept and one close.
                close(fd)
                shared.connections.refused()
                shared.connections.closed(answered: false)
                return
            }
        } else {
            shared.atLimit.store(false, ordering: .relaxed)
        }
        // Recorded before libmicrohttpd has it, so its close notification always finds the entry.
        shared.table.opened(fd)
        let added = shared.state.withLock { state in
            guard let generation = state.current else {
                close(fd)
                return false
            }
            // Counted before the daemon has it, so a retiring generation never looks idle while a
            // connection is on its way in.
            generation.context.connectionsHandedOver.add(1, ordering: .relaxed)
            if tw_mhd_add_connection(generation.daemon, fd) != .YES {
                generation.context.connectionsHandedOver.subtract(1, ordering: .relaxed)
                return false
            }
            return true
        }
        // Refused before libmicrohttpd took it in (the connection limit, a peer already gone), so no
        // close notification will count it.
        if !added {
            shared.table.closed(fd)
            shared.connections.closed(answered: false)
        }
    }

    deinit { stop() }

    /// Stops accepting connections, lets requests in flight finish (up to the grace period), then
    /// closes every connection and listening socket. Safe to call more than once; a second call
    /// returns at once. Never call it from the handler: it waits for the handler's own thread.
    public func stop() {
        acceptor.stop()
        let stopping: (Generation, [Int32])? = shared.state.withLock { state in
            guard let current = state.current else { return nil }
            state.current = nil
            return (current, state.sockets)
        }
        guard let (generation, sockets) = stopping else { return }
        retire(generation, waitingForConnections: false)
        for fd in sockets { close(fd) }
    }

    /// Serves with `tls` from now on (HTTP when nil), without a moment in which the port refuses
    /// connections: a new daemon starts first and new connections go to it, then the old one finishes
    /// its requests in flight and its open connections (up to the grace period) and closes. A connection
    /// already open keeps the old certificate until that point. Throws, and keeps serving as before,
    /// when the new settings cannot be used (a key that does not match its certificate, say).
    public func reconfigure(tls: TLS?) throws(StartError) {
        try options.withLock { (options: inout Options) throws(StartError) in
            var next = options
            next.tls = tls
            try Self.validate(next)
            guard shared.state.withLock({ $0.current != nil }) else {
                throw StartError(description: "the server is stopped")
            }
            let generation = try Self.startGeneration(options: next, table: table, budget: budget, handler: handler)
            let replaced: Generation? = shared.state.withLock { state in
                guard let current = state.current else { return nil }
                // Before the swap, so whoever sees the new generation also sees the old one closing.
                current.context.stopping.store(true, ordering: .relaxed)
                state.current = generation
                state.generationNumber += 1
                return current
            }
            guard let replaced else {
                // `stop()` ran meanwhile.
                MHD_stop_daemon(generation.daemon)
                throw StartError(description: "the server is stopped")
            }
            options = next
            // Unlike at shutdown, a connection the old daemon was handed but has not read a request
            // from yet is as good as in flight: waiting for every connection to close is what keeps
            // the changeover from dropping one. Idle keep-alive connections hold it to the grace period.
            retire(replaced, waitingForConnections: true)
        }
    }

    /// How many daemons have served so far: 1 until the first `reconfigure`.
    var generation: Int { shared.state.withLock { $0.generationNumber } }

    /// Connections the daemon in force has been handed and not closed; 0 once stopped.
    var openConnections: Int { shared.state.withLock { $0.current?.context.openConnections ?? 0 } }

    /// Bytes of response bodies queued and not yet released, all generations together.
    var heldResponseBytes: Int { budget.heldBytes }

    /// Waits up to the grace period for the requests in flight of `generation`, which no longer gets
    /// connections (and, when `waitingForConnections`, for all its connections to close), then stops
    /// it, closing what is left.
    private func retire(_ generation: Generation, waitingForConnections: Bool) {
        // Responses from now on carry `Connection: close` so keep-alive clients let go.
        generation.context.stopping.store(true, ordering: .relaxed)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: gracePeriod)
        func busy() -> Bool {
            if generation.context.inFlight.load(ordering: .acquiring) > 0 { return true }
            return waitingForConnections && generation.context.openConnections > 0
        }
        while busy(), clock.now < deadline { usleep(2_000) }
        MHD_stop_daemon(generation.daemon)
    }

    /// Starts a daemon with a new context for the connections of every socket in `options`.
    private static func startGeneration(
        options: Options, table: HTTPConnectionTable, budget: HTTPResponseBudget,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws(StartError) -> Generation {
        let context = ServerContext(
            handler: handler, errorLog: options.errorLog, answered: options.answered,
            connections: options.connections, table: table, budget: budget,
            clientCertificates: options.tls?.clientCertificates ?? .ignored,
            clientAllowedSANs: Set(options.tls?.clientAllowedSANs ?? []))
        return Generation(daemon: try startDaemon(options: options, context: context), context: context)
    }

    private static func validate(_ options: Options) throws(StartError) {
        if options.listeningSockets.isEmpty { throw StartError(description: "no listening socket given") }
        if !(1...1024).contains(options.threadPoolSize) {
            throw StartError(description: "thread pool size must be 1...1024, not \(options.threadPoolSize)")
        }
        if !(0...86_400).contains(options.connectionTimeoutSeconds) {
            throw StartError(description: "connection timeout must be 0...86400 seconds")
        }
        if !(1...1_000_000).contains(options.connectionLimit) {
            throw StartError(description: "connection limit must be 1...1000000, not \(options.connectionLimit)")
        }
        if options.responseBudget.multiple < 1 || options.responseBudget.minimumBytes < 0 {
            throw StartError(description: "the response budget needs a multiple of at least 1 and a floor of 0 or more")
        }
        if options.tls != nil, MHD_is_feature_supported(.FEATURE_TLS) != .YES {
            throw StartError(description: "this libmicrohttpd was built without TLS support")
        }
        if let tls = options.tls, tls.clientCertificates != .ignored, tls.clientCAPEM == nil {
            throw StartError(description: "client certificates cannot be checked without the CAs to check them against")
        }
    }

    /// libmicrohttpd's own connection limit: one it cannot reach while the server keeps to
    /// `connectionLimit`. libmicrohttpd splits it evenly among its pool threads, and each thread checks
    /// its share alone, so every share must hold all the server's connections (they could all land on
    /// one thread), evicted ones still closing included. Twice over, because a thread still counts a
    /// connection after the close callback that took it off the server's count, until the thread next
    /// cleans up.
    static func libmicrohttpdConnectionLimit(_ connectionLimit: Int, threads: Int) -> Int {
        // Capped at what the C option (an unsigned int) holds; reached only by limits far past any use.
        let open = connectionLimit + HTTPConnectionTable.maxPendingEvictions
        return min(max(threads, 1) * (2 * open + 64), Int(Int32.max))
    }

    private static func startDaemon(options: Options, context: ServerContext) throws(StartError) -> OpaquePointer {
        // No listening socket: connections arrive from `HTTPAcceptor` through MHD_add_connection, which
        // needs the inter-thread channel (ITC) to wake the pool for them.
        var flags =
            MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_ITC.rawValue | MHD_USE_ERROR_LOG.rawValue
            | MHD_USE_NO_LISTEN_SOCKET.rawValue
        // Epoll scales with idle connections; AUTO picks the best poller when epoll is missing.
        flags |= MHD_is_feature_supported(.FEATURE_EPOLL) == .YES ? MHD_USE_EPOLL.rawValue : MHD_USE_AUTO.rawValue
        if options.tls != nil { flags |= MHD_USE_TLS.rawValue }

        let contextPointer = Unmanaged.passUnretained(context).toOpaque()
        let sockets = options.listeningSockets.count
        var items: [MHD_OptionItem] = [
            // First: libmicrohttpd logs through its own stderr logger until it meets this option, and
            // warns at every start when any option precedes it.
            MHD_OptionItem(
                option: MHD_OPTION.EXTERNAL_LOGGER,
                value: Int(bitPattern: unsafeBitCast(logMessage, to: UnsafeRawPointer.self)),
                ptr_value: contextPointer),
            MHD_OptionItem(
                option: MHD_OPTION.NOTIFY_CONNECTION,
                value: Int(bitPattern: unsafeBitCast(connectionNotified, to: UnsafeRawPointer.self)),
                ptr_value: contextPointer),
            MHD_OptionItem(
                option: MHD_OPTION.CONNECTION_TIMEOUT, value: options.connectionTimeoutSeconds, ptr_value: nil),
            MHD_OptionItem(
                option: MHD_OPTION.NOTIFY_COMPLETED,
                value: Int(bitPattern: unsafeBitCast(requestCompleted, to: UnsafeRawPointer.self)),
                ptr_value: contextPointer),
        ]
        // A pool of one means no pool: libmicrohttpd then serves from its single polling thread.
        if options.threadPoolSize * sockets > 1 {
            items.append(
                MHD_OptionItem(
                    option: MHD_OPTION.THREAD_POOL_SIZE, value: options.threadPoolSize * sockets, ptr_value: nil))
        }
        items.append(
            MHD_OptionItem(
                option: MHD_OPTION.CONNECTION_LIMIT,
                value: libmicrohttpdConnectionLimit(options.connectionLimit, threads: options.threadPoolSize * sockets),
                ptr_value: nil))
        // The TLS strings are read while the daemon starts (certificates loaded, priorities compiled),
        // so they need to live only for the duration of the start call.
        var cStrings: [UnsafeMutablePointer<CChar>] = []
        defer { for string in cStrings { free(string) } }
        if let tls = options.tls {
            var texts = [
                (MHD_OPTION.HTTPS_MEM_CERT, tls.certificatePEM), (MHD_OPTION.HTTPS_MEM_KEY, tls.keyPEM),
                (MHD_OPTION.HTTPS_PRIORITIES, tls.priorities),
            ]
            // Trust makes libmicrohttpd ask every client for a certificate; checking it is ours.
            if tls.clientCertificates != .ignored, let authorities = tls.clientCAPEM {
                texts.append((MHD_OPTION.HTTPS_MEM_TRUST, authorities))
            }
            for (option, text) in texts {
                guard let copy = strdup(text) else { throw StartError(description: "out of memory") }
                cStrings.append(copy)
                items.append(MHD_OptionItem(option: option, value: 0, ptr_value: UnsafeMutableRawPointer(copy)))
            }
        }
        items.append(MHD_OptionItem(option: MHD_OPTION.END, value: 0, ptr_value: nil))

        context.lastError.withLock { $0 = nil }
        let daemon: OpaquePointer? = items.withUnsafeMutableBufferPointer { buffer in
            withVaList([MHD_OPTION.ARRAY.rawValue, buffer.baseAddress!, MHD_OPTION.END.rawValue]) { arguments in
                MHD_start_daemon_va(flags, 0, nil, nil, accessHandler, contextPointer, arguments)
            }
        }
        guard let daemon else {
            let reason = context.lastError.withLock { $0 } ?? "no reason given"
            throw StartError(description: "libmicrohttpd could not start: \(reason)")
        }
        return daemon
    }
}

/// What the C callbacks reach through their context pointer.
private final class ServerContext: Sendable {
    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    let errorLog: (@Sendable (String) -> Void)?
    let answered: (@Sendable (_ path: String, _ status: Int) -> Void)?
    let connections: HTTPConnectionCounts
    let table: HTTPConnectionTable
    let budget: HTTPResponseBudget
    let clientCertificates: HTTPServer.ClientCertificates
    let clientAllowedSANs: Set<String>
    /// Requests whose handler has been called and whose response is not yet fully sent.
    let inFlight = Atomic<Int>(0)
    /// Connections given to the daemon, and those it has closed since: libmicrohttpd's own count
    /// misses a connection until a pool thread has taken it in.
    let connectionsHandedOver = Atomic<Int>(0)
    let connectionsClosed = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    /// The latest libmicrohttpd message, so a failed start can say why.
    let lastError = Mutex<String?>(nil)

    init(
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse, errorLog: (@Sendable (String) -> Void)?,
        answered: (@Sendable (_ path: String, _ status: Int) -> Void)?, connections: HTTPConnectionCounts,
        table: HTTPConnectionTable, budget: HTTPResponseBudget, clientCertificates: HTTPServer.ClientCertificates,
        clientAllowedSANs: Set<String>
    ) {
        self.handler = handler
        self.errorLog = errorLog
        self.answered = answered
        self.connections = connections
        self.table = table
        self.budget = budget
        self.clientCertificates = clientCertificates
        self.clientAllowedSANs = clientAllowedSANs
    }

    /// Why the client of `connection` may not be served under the client certificate policy, or nil.
    func refusal(_ connection: OpaquePointer) -> String? {
        if clientCertificates == .ignored { return nil }
        switch tw_mhd_client_certificate(connection) {
        case TW_CLIENT_CERTIFICATE_VERIFIED:
            if clientAllowedSANs.isEmpty { return nil }
            var buffer = [CChar](repeating: 0, count: 8_192)
            let count = tw_mhd_client_certificate_names(connection, &buffer, buffer.count)
            let names = buffer[..<count].withUnsafeBufferPointer { bytes in
                String(decoding: UnsafeRawBufferPointer(bytes), as: UTF8.self)
            }
            let allowed = names.split(separator: "\n").contains { clientAllowedSANs.contains(String($0)) }
            return allowed ? nil : "no allowed subject alternative name in the client certificate"
        case TW_CLIENT_CERTIFICATE_NONE:
            return clientCertificates == .required ? "no client certificate" : nil
        case TW_CLIENT_CERTIFICATE_REFUSED: return "client certificate not trusted"
        default: return "not a TLS connection"
        }
    }

    /// Connections handed over and not yet closed.
    var openConnections: Int {
        connectionsHandedOver.load(ordering: .acquiring) - connectionsClosed.load(ordering: .acquiring)
    }

    func log(_ message: String) {
        lastError.withLock { $0 = message }
        errorLog?(message)
    }
}

/// `*con_cls` markers. They are never dereferenced, only compared, so no allocation has to be freed
/// when a connection dies mid-request.
private var requestSeen: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 1)! }
private var requestSentBody: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 2)! }

private func context(_ pointer: UnsafeMutableRawPointer) -> ServerContext {
    Unmanaged<ServerContext>.fromOpaque(pointer).takeUnretainedValue()
}

/// libmicrohttpd calls this at least twice per request: once when the headers are in (`*con_cls` is
/// still NULL), then with each piece of body, then once more with no data left.
private let accessHandler: MHD_AccessHandlerCallback = {
    contextPointer, connection, url, method, _, _, uploadDataSize, requestState in
    guard let contextPointer, let connection, let uploadDataSize, let requestState else { return .NO }
    let context = context(contextPointer)
    if requestState.pointee == nil {
        requestState.pointee = requestSeen
        context.inFlight.add(1, ordering: .relaxed)
        context.table.requestStarted(tw_mhd_connection_fd(connection), at: .now)
        // Answering before the body is read makes libmicrohttpd skip `100 Continue` and close the
        // connection after the response, so a body we would refuse is never transferred.
        if announcesBody(connection) {
            return respond(context, connection, method: method, url: url, hasBody: true)
        }
        return .YES
    }
    if uploadDataSize.pointee != 0 {
        // Unreachable for well-formed HTTP/1.1 (a body needs a length or chunking, both announced),
        // but discarding keeps memory bounded whatever arrives.
        uploadDataSize.pointee = 0
        requestState.pointee = requestSentBody
        return .YES
    }
    return respond(context, connection, method: method, url: url, hasBody: requestState.pointee == requestSentBody)
}

private let requestCompleted: MHD_RequestCompletedCallback = { contextPointer, connection, requestState, _ in
    guard let contextPointer, let requestState, requestState.pointee != nil else { return }
    requestState.pointee = nil
    let context = context(contextPointer)
    if let connection { context.table.requestEnded(tw_mhd_connection_fd(connection)) }
    context.inFlight.subtract(1, ordering: .releasing)
}

/// Gives each connection a flag, set once the server has answered a request on it, so its close can be
/// counted as answered or not. The flag is only touched by the pool thread that serves the connection.
/// libmicrohttpd notifies a close before it closes the descriptor, which `HTTPConnectionTable` relies on.
private let connectionNotified: MHD_NotifyConnectionCallback = { contextPointer, connection, socketContext, code in
    guard let contextPointer, let socketContext else { return }
    let context = context(contextPointer)
    switch code {
    case .CONNECTION_NOTIFY_STARTED:
        let answered = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
        answered.initialize(to: false)
        socketContext.pointee = UnsafeMutableRawPointer(answered)
    case .CONNECTION_NOTIFY_CLOSED:
        if let connection { context.table.closed(tw_mhd_connection_fd(connection)) }
        let answered = socketContext.pointee?.assumingMemoryBound(to: Bool.self)
        context.connections.closed(answered: answered?.pointee ?? false)
        answered?.deallocate()
        socketContext.pointee = nil
        context.connectionsClosed.add(1, ordering: .releasing)
    default:
        break
    }
}

private let logMessage: MHD_LogCallback = { contextPointer, format, arguments in
    guard let contextPointer, let format, let arguments else { return }
    var buffer = [CChar](repeating: 0, count: 512)
    _ = vsnprintf(&buffer, buffer.count, format, arguments)
    var message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    while message.last?.isNewline == true { message.removeLast() }
    context(contextPointer).log(message)
}

private let collectHeader: MHD_KeyValueIterator = { headersPointer, _, key, value in
    guard let headersPointer, let key else { return .YES }
    let headers = headersPointer.assumingMemoryBound(to: HTTPHeaders.self)
    headers.pointee.append(name: String(cString: key), value: value.map { String(cString: $0) } ?? "")
    return .YES
}

private func announcesBody(_ connection: OpaquePointer) -> Bool {
    if MHD_lookup_connection_value(connection, .HEADER_KIND, "Transfer-Encoding") != nil { return true }
    guard let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length") else {
        return false
    }
    return strcmp(length, "0") != 0
}

private func respond(
    _ context: ServerContext, _ connection: OpaquePointer, method: UnsafePointer<CChar>?, url: UnsafePointer<CChar>?,
    hasBody: Bool
) -> MHD_Result {
    var headers = HTTPHeaders()
    _ = withUnsafeMutablePointer(to: &headers) { pointer in
        MHD_get_connection_values(connection, .HEADER_KIND, collectHeader, UnsafeMutableRawPointer(pointer))
    }
    let request = HTTPRequest(
        method: method.map { String(cString: $0) } ?? "", path: url.map { String(cString: $0) } ?? "/",
        headers: headers, hasBody: hasBody)
    var reply: HTTPResponse
    if let refusal = context.refusal(connection) {
        // Checked per request, not per connection: a scrape every few seconds makes the cost (one chain
        // verification) negligible, and no connection state has to be kept and cleaned up.
        context.errorLog?("refused \(request.method) \(request.path): \(refusal)")
        reply = forbidden
    } else {
        reply = context.handler(request)
    }

    // A large body counts against the budget while libmicrohttpd holds it; one that does not fit is
    // dropped here and the request answered 503 instead.
    var lease: HTTPResponseBudget.Lease?
    let bodyBytes = reply.ownedBody?.count ?? reply.body.count
    if !reply.omitsBody, bodyBytes > HTTPResponseBudget.untrackedBytes {
        switch admit(context, connection, bytes: bodyBytes) {
        case .admitted(let admitted): lease = admitted
        case .refused(let seconds): reply = serviceUnavailable(replacing: reply, retryAfterSeconds: seconds)
        }
    }

    let response: OpaquePointer?
    if reply.omitsBody {
        response = headersOnlyResponse()
    } else if let body = reply.ownedBody ?? lease.map({ _ in ResponseBody(copying: reply.body) }) {
        // Owned bodies go out without a copy: libmicrohttpd keeps a retained reference to the body and
        // releases it once the response is destroyed, which gives its bytes back to the budget. A large
        // array body is copied once into one, as MUST_COPY would, so that its release is seen.
        let retained = Unmanaged.passRetained(QueuedBody(body, lease: lease, budget: context.budget)).toOpaque()
        response = MHD_create_response_from_buffer_with_free_callback_cls(
            body.count, body.base, releaseResponseBody, retained)
        if response == nil { releaseResponseBody(retained) }
    } else {
        // MUST_COPY costs one memcpy of a small body. Handing libmicrohttpd the Array's own storage
        // would need its address to outlive `withUnsafeBytes`, which Swift does not promise.
        response = reply.body.withUnsafeBytes { bytes in
            MHD_create_response_from_buffer(
                bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
        }
    }
    guard let response else { return .NO }
    defer { MHD_destroy_response(response) }
    for (name, value) in reply.headers where MHD_add_response_header(response, name, value) != .YES {
        context.log("response header \(name) was refused")
    }
    if context.stopping.load(ordering: .relaxed) {
        _ = MHD_add_response_header(response, "Connection", "close")
    }
    let queued = MHD_queue_response(connection, UInt32(clamping: reply.status), response)
    if queued == .YES {
        tw_mhd_socket_context(connection)?.assumingMemoryBound(to: Bool.self).pointee = true
        context.answered?(request.path, reply.status)
    }
    return queued
}

/// A response of unknown length whose body is never produced. Without a length, libmicrohttpd 0.9.75
/// answers HTTP/1.1 with chunked encoding and writes the closing `0` chunk even after a HEAD, bytes a
/// keep-alive client would take for the next response. The HTTP/1.0-compatible mode never chunks: it
/// ends a body by closing the connection, so a HEAD gets the headers, no length, and a close.
private func headersOnlyResponse() -> OpaquePointer? {
    // UInt64.max is MHD_SIZE_UNKNOWN, a macro Swift does not import.
    guard let response = MHD_create_response_from_callback(UInt64.max, 1024, noBody, nil, nil) else { return nil }
    guard tw_mhd_set_response_flags(response, .RF_HTTP_1_0_COMPATIBLE_STRICT) == .YES else {
        MHD_destroy_response(response)
        return nil
    }
    return response
}

/// Called only if a GET were answered with `omitsBody`: it ends the body at once (an empty body, then a
/// close). -1 is MHD_CONTENT_READER_END_OF_STREAM.
private let noBody: MHD_ContentReaderCallback = { _, _, _, _ in -1 }

/// A body handed to libmicrohttpd, and its place in the budget (none for a small one).
private final class QueuedBody {
    let body: ResponseBody
    let lease: HTTPResponseBudget.Lease?
    let budget: HTTPResponseBudget

    init(_ body: ResponseBody, lease: HTTPResponseBudget.Lease?, budget: HTTPResponseBudget) {
        self.body = body
        self.lease = lease
        self.budget = budget
    }
}

/// Admits a body of `bytes` about to be queued on `connection` (see `HTTPResponseBudget`).
private func admit(_ context: ServerContext, _ connection: OpaquePointer, bytes: Int) -> HTTPResponseBudget.Admission {
    let fd = tw_mhd_connection_fd(connection)
    var status = stat()
    let known = fd >= 0 && fstat(fd, &status) == 0
    let queuedOn = HTTPResponseBudget.Connection(
        fd: fd, inode: known ? status.st_ino : 0, device: known ? status.st_dev : 0)
    // Counted with the connection limit's evictions: either way an open connection was shut down to make
    // room, and the operator's question (who holds connections without reading?) is the same.
    return context.budget.admit(
        bytes, on: queuedOn, evict: { context.table.evict($0, shutDown: context.connections.evicted) },
        log: context.errorLog)
}

/// Called by libmicrohttpd when a response made from a `QueuedBody` is destroyed.
private func releaseResponseBody(_ context: UnsafeMutableRawPointer?) {
    guard let context else { return }
    let queued = Unmanaged<QueuedBody>.fromOpaque(context)
    let (lease, budget) = (queued.takeUnretainedValue().lease, queued.takeUnretainedValue().budget)
    // The body is freed first (libmicrohttpd held the last reference), so a trim can return it.
    queued.release()
    if let lease, budget.release(lease) { tw_malloc_trim() }
}

/// The answer to a request whose body does not fit the budget: the reply's headers (those a web config
/// adds included) except those that describe its body.
private func serviceUnavailable(replacing reply: HTTPResponse, retryAfterSeconds: Int) -> HTTPResponse {
    let described: Set<String> = ["content-type", "content-encoding", "content-length", "vary"]
    let kept = reply.headers.filter { !described.contains($0.0.lowercased()) }
    return HTTPResponse(
        status: 503,
        headers: kept + [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", String(retryAfterSeconds))],
        body: Array("Service Unavailable: earlier responses are still being sent\n".utf8))
}

/// The answer to a client without the certificate the policy asks for. It says what is missing, not
/// why the certificate failed, which the daemon's debug log records.
private let forbidden = HTTPResponse(
    status: 403,
    headers: [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")],
    body: Array("A trusted client certificate is required.\n".utf8))
