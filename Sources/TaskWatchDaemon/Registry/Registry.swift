import Logging
import Synchronization
import TaskWatchWire

/// The limits the registry enforces, from the command line.
public struct RegistryLimits: Sendable {
    public var maxClients = 4_096
    public var maxSeries = 1_000_000
    public var maxSeriesPerClient = 10_000
    /// How long a gone client's series stay visible, in nanoseconds.
    public var graceNanoseconds: UInt64 = 30_000_000_000
    /// The `swift_tasks_peak` window, in nanoseconds.
    public var peakWindowNanoseconds: UInt64 = 15_000_000_000
    /// When non-empty, only peers with one of these uids (or one of the gids) may connect.
    public var allowedUIDs: Set<UInt32> = []
    public var allowedGIDs: Set<UInt32> = []
    /// Consecutive refused frames after which a connection is closed.
    public var maxConsecutiveRejections = 32
    /// Bytes one connection's series may add to `/metrics`, and all connections' together, counted as
    /// `Registry.chargedBytes` does: every line a series is shown on (one, or a histogram's buckets,
    /// `_sum` and `_count`) repeats its name, its labels as stored (rendered and escaped) and the
    /// connection's own labels. The series caps alone bound neither memory nor a scrape: a series may
    /// carry 32 labels of 4 KiB, so 10,000 of them would take about 2 GB (a review sent 300 such series,
    /// 17 MB, and the daemon grew by 63 MB), and a histogram of 256 bounds repeats its labels on 259
    /// lines. The help texts of all families, and the lines the daemon adds for each connection
    /// (`Registry.connectionLineBytes`), count against the overall budget too. 16 MiB is 1.6 KiB a
    /// series at the default series cap, far more than real series take; 256 MiB overall.
    /// `--ingest.max-label-bytes-per-client` and `--ingest.max-label-bytes`.
    public var maxLabelBytesPerClient = 16 << 20
    public var maxLabelBytes = 256 << 20
    /// Connections open at once, and series held, by the processes of one uid together; 0 sets no cap.
    /// Off by default: on many hosts every service runs as one user, and a cap would count them all
    /// as one sender. With a user per service, they keep one misbehaving service from taking every
    /// place under `maxClients` and every series under `maxSeries`.
    public var maxClientsPerUID = 0
    public var maxSeriesPerUID = 0

    public init() {}
}

/// Per-client state, fed by the ingest thread and read by scrapes.
///
/// One mutex guards everything. The ingest thread holds it for one frame at a time; a scrape holds it
/// only to take a snapshot, which copies no series data (the tables are copy-on-write), so neither side
/// waits on the other for longer than that.
public final class Registry: IngestSink, Sendable {
    private let state: Mutex<State>
    private let limits: RegistryLimits
    private let clock: any DaemonClock
    /// Where refused clients and dropped series are reported, rate-limited; nil logs nothing.
    private let log: RefusalLog?
    /// A process's start time in clock ticks since boot, nil when `/proc` does not show it: what tells a
    /// reused pid from the process that had it. `ProcessReader.startTicks` but in tests.
    private let startTicks: @Sendable (_ pid: Int32) -> UInt64?

    /// Counters about the registry's own work.
    struct Stats {
        var messagesReceived: UInt64 = 0
        var rejectedFrames: [FrameRejection: UInt64] = [:]
        var droppedSeries: [SeriesRejection: UInt64] = [:]
        /// Entries of values, histograms and peaks frames for series whose declaration waits for room, by
        /// the limit it waits on: `taskwatch_values_dropped_total{reason}`.
        var droppedValues: [SeriesRejection: UInt64] = [:]
        var rejectedClients: [ClientRejection: UInt64] = [:]
    }

    struct State: ~Copyable {
        var clients: [ConnectionID: ClientState] = [:]
        var families = FamilyTable()
        var seriesTotal = 0
        /// Label bytes of every series held, as `RegistryLimits.maxLabelBytes` counts them.
        var labelBytes = 0
        /// Clients gone and held only for their grace period (an upper bound: see `evictGraceHeld`).
        var graceHeld = 0
        var connectedCount = 0
        /// Counts the times series went away (retired, or their client removed, or a client without
        /// series that had said hello) or may be made to (their client gone, held for its grace period,
        /// which a declaration evicts when it needs the room): what may make room for a derived `_peak`
        /// or a waiting declaration refused at a limit.
        var seriesFreed: UInt64 = 0
        /// What the waiting declarations of every connection hold, as `PendingDeclaration.cost` counts it.
        var pendingBytes = 0
        /// Stamps waiting declarations in the order they were refused, over all connections: freed room
        /// goes to the lowest stamp first (`admitWaiting`).
        var waitStamps: UInt64 = 0
        /// Connections whose oldest waiting declaration may fit once room frees, by its stamp.
        var waitQueue = WaitQueue()
        /// Connections set aside because their oldest waiting declaration met the uid's cap, by uid, in
        /// the order of that declaration: an entry while one of the uid is set aside.
        var parkedByUID: [UInt32: ParkedUID] = [:]
        /// Uids a series of which went while connections of theirs were set aside (`ParkedUID.freed`):
        /// their oldest are queued again at the next try, as many as the uid has room for.
        var freedUIDs: [UInt32] = []
        /// Declarations `admitWaiting` tried: for tests that a try costs what it admits, not what waits.
        var waitTries: UInt64 = 0
        /// Parked connections whose limit a series going has freed: queued again at the next try.
        var requeue: [ConnectionID] = []
        /// `seriesFreed` when waiting declarations were last tried (`admitWaiting`).
        var waitCheckedAt: UInt64 = 0
        /// Set when a try is due though no series went: one stopped at its batch, or a waiting
        /// declaration went without being admitted (the one that blocked the others may be gone).
        var waitRetryForced = false
        /// The limit the oldest waiting declaration that could not fit met, when it is one every
        /// declaration needs room under (`global_limit`, or `byte_limit` of all connections): until room
        /// frees, a new declaration waits behind it rather than take room freed for it.
        var waitBlocked: SeriesRejection?

        /// Declarations refused as a `conflict` and kept (`ClientState.conflicted`), by each name such a
        /// declaration clashes on (its name as shown and the names its family would write besides), by
        /// connection: a family of one of these names going makes them due for a try. Taken out of here
        /// when due, so a family of the name going again costs nothing until they are kept again. Each
        /// id with its stamp (`KeptDeclaration.stamp`), to queue those freed at once oldest first.
        var conflictWaiters: [String: [ConnectionID: [UInt32: UInt64]]] = [:]
        /// Kept declarations due for a try, oldest first from `conflictQueueHead`, tried at the tick
        /// (`retryConflicted`); `conflictDue` holds the same keys, so each is queued once at a time.
        /// Entries of declarations forgotten meanwhile are skipped, or compacted away.
        var conflictQueue: [ConflictKey] = []
        var conflictQueueHead = 0
        var conflictDue: Set<ConflictKey> = []
        /// How many declarations every connection's `conflicted` holds, and their bytes as
        /// `PendingDeclaration.keptCost` counts them.
        var conflictedCount = 0
        var conflictedBytes = 0
        /// Kept declarations tried again so far: for tests that the work stays bounded.
        var conflictTries = 0

        /// Whether waiting declarations are to be tried before the next frame is applied.
        var waitRetryDue: Bool { waitRetryForced || waitCheckedAt != seriesFreed }
        /// Open connections and series held, by the sender's uid; a uid with neither has no entry.
        var usageByUID: [UInt32: UIDUsage] = [:]
        var stats = Stats()
    }

    struct UIDUsage {
        var connections = 0
        var series = 0
        /// Gone clients of the uid held for their grace period, so that making room under
        /// `maxSeriesPerUID` scans the clients only when one of them could give way.
        var graceHeld = 0
    }

    public convenience init(limits: RegistryLimits, clock: any DaemonClock = SystemClock(), log: RefusalLog? = nil) {
        self.init(limits: limits, clock: clock, log: log, startTicks: { ProcessReader.startTicks(pid: $0) })
    }

    /// - Parameter startTicks: reads a process's start time; tests pass their own to stand for a reused
    ///   pid, which the kernel cannot be made to give on demand.
    init(
        limits: RegistryLimits, clock: any DaemonClock, log: RefusalLog?,
        startTicks: @escaping @Sendable (_ pid: Int32) -> UInt64?
    ) {
        self.limits = limits
        self.clock = clock
        self.log = log
        self.startTicks = startTicks
        state = Mutex(State())
    }

    // MARK: IngestSink

    /// `--ingest.allowed-gids`: the only groups `connectionOpened` asks a peer's membership of.
    public var peerGroupsOfInterest: Set<UInt32> { limits.allowedGIDs }

    public func connectionOpened(_ id: ConnectionID, peer: PeerCredentials) -> Bool {
        // Read outside the lock. Nil also when `/proc` hides the process (`hidepid`) or it has exited
        // already; such a peer is still served, its pid being right (see `applyHello`).
        let startTicks = peer.pid > 0 ? self.startTicks(peer.pid) : nil
        let refused: ClientRejection? = state.withLock { state in
            if !limits.allowedUIDs.isEmpty || !limits.allowedGIDs.isEmpty,
                !limits.allowedUIDs.contains(peer.uid), !peer.isMember(ofAny: limits.allowedGIDs)
            {
                state.stats.rejectedClients[.notAllowed, default: 0] += 1
                return .notAllowed
            }
            // SO_PEERCRED says 0 for a process outside the daemon's pid namespace. Served, every such
            // peer would show `pid="0"`, and two of them under one process name would take each other's
            // place at every hello, each closing the other's connection.
            if peer.pid <= 0 {
                state.stats.rejectedClients[.unknownPID, default: 0] += 1
                return .unknownPID
            }
            if state.connectedCount >= limits.maxClients {
                state.stats.rejectedClients[.maxClients, default: 0] += 1
                return .maxClients
            }
            if limits.maxClientsPerUID > 0,
                state.usageByUID[peer.uid, default: UIDUsage()].connections >= limits.maxClientsPerUID
            {
                state.stats.rejectedClients[.uidLimit, default: 0] += 1
                return .uidLimit
            }
            state.clients[id] = ClientState(connection: id, peer: peer, processStartTicks: startTicks)
            state.connectedCount += 1
            state.usageByUID[peer.uid, default: UIDUsage()].connections += 1
            return nil
        }
        guard let refused else { return true }
        // Outside the lock: the line may wait on a slow log, and scrapes must not wait with it.
        if let log, let line = log.clientRejected(refused, peer: peer, details: refusalDetails(refused)) {
            log.write([line])
        }
        return false
    }

    /// What a refused client's log line adds: the limit it ran into, or what to do.
    private func refusalDetails(_ reason: ClientRejection) -> Logger.Metadata {
        switch reason {
        case .maxClients: ["limit": .stringConvertible(limits.maxClients)]
        case .uidLimit: ["limit": .stringConvertible(limits.maxClientsPerUID)]
        case .byteLimit: ["limit": .stringConvertible(limits.maxLabelBytes)]
        case .unknownPID: ["hint": "\(Self.unknownPIDHint)"]
        default: [:]
        }
    }

    public func frameReceived(_ id: ConnectionID, bytes: UnsafeRawBufferPointer, truncated: Bool) -> IngestVerdict {
        // The wall clock stamps every report; the monotonic one only the frames of the slow path (peaks
        // windows), where it is read: one clock read less per values frame.
        let wall = clock.wallSeconds()
        // Hello, declare and histograms frames are decoded before taking the lock: decoding hundreds of
        // declarations allocates strings, and a client flooding them must not keep scrapes waiting.
        var decoded: Result<Frame, WireError>?
        if !truncated, let kind = try? FrameDecoder.open(bytes).kind,
            kind == .hello || kind == .declare || kind == .histograms || kind == .retire
        {
            decoded = Result { () throws(WireError) in try FrameDecoder.decode(bytes) }
        }
        // Warnings admitted under the lock, written after it: empty, and never allocated, unless refused.
        var warnings: [RefusalLine] = []
        let verdict = state.withLock { state in
            state.stats.messagesReceived += 1
            // The hot path: a values frame from a live client touches only that client, in place. Not
            // while waiting declarations are due a try, which may admit some of this frame's series.
            if !truncated, !state.waitRetryDue, let slot = state.clients.index(forKey: id),
                let reader = try? FrameDecoder.open(bytes), reader.kind == .values,
                let verdict = applyValuesInPlace(
                    reader, to: &state.clients.values[slot], stats: &state.stats, wall: wall, warnings: &warnings)
            {
                return verdict
            }
            // Before the frame, so that values it carries for a series admitted now are shown.
            let triedBefore = state.waitRetryDue
            if triedBefore { admitWaiting(&state) }
            guard var client = state.clients.removeValue(forKey: id), client.connected else { return .disconnect }
            if client.superseded || client.refused != nil {
                state.clients[id] = client
                return .disconnect
            }
            let outcome =
                truncated
                ? .failure(.oversize)
                : apply(
                    bytes, decoded: decoded, to: &client, state: &state, now: clock.monotonicNanoseconds(),
                    warnings: &warnings)
            var verdict = settle(outcome, client: &client, stats: &state.stats, wall: wall, warnings: &warnings)
            if client.superseded { verdict = .disconnect }
            if let refused = client.refused {
                state.stats.rejectedClients[refused, default: 0] += 1
                if let log, let line = log.clientRejected(refused, peer: client.peer, details: refusalDetails(refused))
                {
                    warnings.append(line)
                }
                verdict = .disconnect
            }
            state.clients[id] = client
            // Room this frame freed (a retire) goes to the declarations that waited for it now, before
            // the same connection's next frame could declare into it. One batch a frame otherwise.
            if state.waitCheckedAt != state.seriesFreed || (state.waitRetryForced && !triedBefore) {
                admitWaiting(&state)
            }
            return verdict
        }
        if !warnings.isEmpty { log?.write(warnings) }
        return verdict
    }

    /// Applies a values frame to a live client that has said hello, or returns nil and touches nothing.
    ///
    /// The client's flags are checked here, through one in-place access, because reading each through
    /// the dictionary's subscript copied the whole `ClientState`, retaining and releasing every one of
    /// its references: a quarter of the ingest thread's time with 4-update frames (`perf record`).
    @inline(__always)
    private func applyValuesInPlace(
        _ reader: FrameReader, to client: inout ClientState, stats: inout Stats, wall: Double,
        warnings: inout [RefusalLine]
    ) -> IngestVerdict? {
        guard client.connected, !client.superseded, client.hello != nil else { return nil }
        let outcome = applyValues(reader, to: &client, stats: &stats).map { true }
        return settle(outcome, client: &client, stats: &stats, wall: wall, warnings: &warnings)
    }

    /// Counts a frame's outcome and decides whether the connection stays.
    @inline(__always)
    private func settle(
        _ outcome: Result<Bool, FrameRejection>,
        client: inout ClientState,
        stats: inout Stats,
        wall: Double,
        warnings: inout [RefusalLine]
    ) -> IngestVerdict {
        switch outcome {
        case .success(let isReport):
            client.consecutiveRejections = 0
            if isReport { client.lastReport = wall }
            return .keep
        case .failure(let reason):
            stats.rejectedFrames[reason, default: 0] += 1
            client.consecutiveRejections += 1
            if client.consecutiveRejections >= limits.maxConsecutiveRejections {
                stats.rejectedClients[.badFrames, default: 0] += 1
                if let log { noteBadFrames(client, lastReason: reason, log: log, warnings: &warnings) }
                return .disconnect
            }
            return .keep
        }
    }

    /// Out of line, so the hot path that inlines `settle` carries only a call to it.
    @inline(never)
    private func noteBadFrames(
        _ client: ClientState, lastReason: FrameRejection, log: RefusalLog, warnings: inout [RefusalLine]
    ) {
        var details: Logger.Metadata = [
            "frame_reason": "\(lastReason.rawValue)", "frames": .stringConvertible(client.consecutiveRejections),
        ]
        if client.hello != nil { details["process"] = "\(client.processName)" }
        if let line = log.clientRejected(.badFrames, peer: client.peer, details: details) { warnings.append(line) }
    }

    public func helloDeadlinePassed(_ id: ConnectionID) -> Bool {
        // Closed: a connection still without a hello. Counted and logged only when it never said one: a
        // connection that another of its process took over said hello, and was not silent.
        let (close, silent): (Bool, PeerCredentials?) = state.withLock { state in
            guard let client = state.clients[id], client.connected, client.hello == nil else { return (false, nil) }
            if client.superseded || client.refused != nil { return (true, nil) }
            state.stats.rejectedClients[.helloTimeout, default: 0] += 1
            return (true, client.peer)
        }
        if let silent, let log, let line = log.clientRejected(.helloTimeout, peer: silent) { log.write([line]) }
        return close
    }

    public func connectionClosed(_ id: ConnectionID) {
        let now = clock.monotonicNanoseconds()
        state.withLock { state in
            guard var client = state.clients[id], client.connected else { return }
            client.connected = false
            client.disconnectedAt = now
            Self.dropPending(of: &client, in: &state)
            Self.dropConflicted(of: &client, in: &state)
            state.connectedCount -= 1
            state.usageByUID[client.peer.uid, default: UIDUsage()].connections -= 1
            Self.forgetIfUnused(client.peer.uid, in: &state)
            // A goodbye says the process is going away on purpose: nothing to keep for the grace period.
            if client.superseded || client.saidGoodbye || client.hello == nil || limits.graceNanoseconds == 0 {
                removeSeries(of: client, from: &state)
                state.clients[id] = nil
            } else {
                state.clients[id] = client
                // Its series may now give way to a live client's declaration (`evictGraceHeld`), so waiting
                // ones are tried again as if they had gone. Without this they were not tried until the
                // grace period ended, 30 s, while a declaration made meanwhile was admitted at once in
                // their place: a waiting series came back after every newcomer's.
                state.seriesFreed &+= 1
                if client.liveCount > 0 { Self.uidFreed(client.peer.uid, in: &state) }
                state.graceHeld += 1
                state.usageByUID[client.peer.uid, default: UIDUsage()].graceHeld += 1
                // Gone clients are capped like connected ones, or a loop of connect, hello and close
                // would pile them up, a grace period each, with their labels and series.
                if state.graceHeld > limits.maxClients { _ = evictGraceHeld(&state) }
            }
        }
    }

    /// What an `unknown_pid` line tells the operator to do.
    static let unknownPIDHint =
        "the peer's process is outside the daemon's pid namespace: run taskwatchd in the host's (hostPID, --pid=host)"

    /// Uids with an entry in the per-uid usage: for tests that nothing is left behind.
    var trackedUIDCount: Int { state.withLock { $0.usageByUID.count } }

    /// What waiting declarations hold, all connections together: for tests that nothing is left behind.
    var pendingBytes: Int { state.withLock { $0.pendingBytes } }

    /// What declarations kept after a conflict hold, all connections together, and the names they are
    /// indexed under: for tests that nothing is left behind.
    var conflicted: (bytes: Int, names: Int) { state.withLock { ($0.conflictedBytes, $0.conflictWaiters.count) } }

    /// Declarations kept after a conflict tried again so far, and the entries of the queue of those due:
    /// for tests that the work and the queue stay bounded.
    var conflictRetries: (tries: Int, queued: Int) {
        state.withLock { ($0.conflictTries, $0.conflictQueue.count - $0.conflictQueueHead) }
    }

    /// Entries in every connection's queue of waiting declarations, stale ones included: for tests that
    /// the queue stays bounded.
    var pendingQueueEntries: Int { state.withLock { $0.clients.values.reduce(0) { $0 + $1.pendingOrder.count } } }

    /// Tickets in the order of waiting connections, stale ones included, and uids with connections set
    /// aside at their cap: for tests that both stay bounded and nothing is left behind.
    var waitQueueTickets: Int { state.withLock { $0.waitQueue.count } }
    var parkedUIDCount: Int { state.withLock { $0.parkedByUID.count } }
    var waitTries: UInt64 { state.withLock { $0.waitTries } }
    var parkedUIDTickets: Int { state.withLock { $0.parkedByUID.values.reduce(0) { $0 + $1.queue.count } } }

    /// What does not hold among the counts and indexes of declarations kept after a conflict and of
    /// waiting ones: for tests, empty when all is well.
    var conflictInvariantViolations: [String] {
        state.withLock { state in
            var problems: [String] = []
            var count = 0
            var bytes = 0
            var pendingBytes = 0
            for (connection, client) in state.clients {
                let marked = client.indexByID.count(of: ClientState.droppedID)
                if marked != client.droppedIDs {
                    problems.append("\(connection): droppedIDs \(client.droppedIDs), marked \(marked)")
                }
                if client.droppedIDs < 0 || client.droppedIDs > limits.maxSeriesPerClient {
                    problems.append("\(connection): droppedIDs \(client.droppedIDs) out of bounds")
                }
                var own = 0
                for (id, kept) in client.conflicted {
                    let declaration = kept.declaration
                    own += PendingDeclaration.keptCost(of: declaration, names: Self.conflictNames(of: declaration))
                    if client.indexByID[id] != ClientState.droppedID {
                        problems.append("\(connection): kept \(id) not marked dropped")
                    }
                    let key = ConflictKey(connection: connection, id: id)
                    let names = Self.conflictNames(of: declaration)
                    let listed = names.filter { state.conflictWaiters[$0]?[connection]?[id] == kept.stamp }
                    let due =
                        state.conflictDue.contains(key)
                        && state.conflictQueue[state.conflictQueueHead...].contains(key)
                    if !due && listed.count != names.count {
                        problems.append("\(connection): kept \(id) neither due nor a waiter of all its names")
                    }
                    // A lost wake-up: not due, though no family it clashes with is left.
                    var families = state.families
                    let labelNames = declaration.labels.map(\.name).sorted()
                    let shown = declaration.type.exposedName(declaration.name)
                    if !due,
                        case .success = families.admit(
                            name: shown, type: declaration.type, labelNames: labelNames, help: "")
                    {
                        problems.append("\(connection): kept \(id) not due though it no longer clashes")
                    }
                }
                if own != client.conflictedBytes { problems.append("\(connection): conflictedBytes") }
                count += client.conflicted.count
                bytes += own
                pendingBytes += client.pending.values.reduce(0) { $0 + $1.cost }
                if client.pending.values.reduce(0, { $0 + $1.cost }) != client.pendingBytes {
                    problems.append("\(connection): pendingBytes")
                }
                for id in client.pending.keys where client.indexByID[id] != ClientState.pendingID {
                    problems.append("\(connection): waiting \(id) not marked waiting")
                }
                for id in client.pending.keys where client.conflicted[id] != nil {
                    problems.append("\(connection): \(id) both waiting and kept")
                }
            }
            if count != state.conflictedCount {
                problems.append("conflictedCount \(state.conflictedCount), held \(count)")
            }
            if bytes != state.conflictedBytes {
                problems.append("conflictedBytes \(state.conflictedBytes), held \(bytes)")
            }
            if pendingBytes != state.pendingBytes {
                problems.append("pendingBytes \(state.pendingBytes), held \(pendingBytes)")
            }
            for (name, waiters) in state.conflictWaiters {
                for (connection, ids) in waiters {
                    if ids.isEmpty { problems.append("\(name): empty waiters of \(connection)") }
                    for (id, stamp) in ids where state.clients[connection]?.conflicted[id]?.stamp != stamp {
                        problems.append("\(name): waiter \(connection)/\(id) not kept")
                    }
                }
            }
            return problems
        }
    }

    public func tick(nowNanoseconds: UInt64) {
        let now = clock.monotonicNanoseconds()
        state.withLock { state in
            for (id, client) in state.clients
            where !client.connected && now &- client.disconnectedAt >= limits.graceNanoseconds {
                Self.releaseGraceHeld(client, in: &state)
                removeSeries(of: client, from: &state)
                state.clients[id] = nil
            }
            // Room freed by grace periods ending, or by a connection that closed, goes to the waiting
            // declarations within a tick even while their connections send nothing; then declarations in
            // conflict with a family gone since the last tick are tried, as new declarations, behind
            // them. Tried first, a kept one took room freed under a cap (the holder of its name closing
            // freed both at once) from one of another connection refused before it. Waiting ones are
            // tried again after only for room the kept ones' tries freed (a client held for its grace
            // period evicted), not for a try that stopped at its batch: one batch a tick, as before.
            if state.waitRetryDue { admitWaiting(&state) }
            retryConflicted(&state)
            if state.waitCheckedAt != state.seriesFreed { admitWaiting(&state) }
            for id in Array(state.clients.keys) where state.clients[id]?.peaks.isEmpty == false {
                refreshPeaks(of: &state.clients[id]!, now: now)
            }
        }
    }

    // MARK: Frames

    /// Applies one frame to a client. Success says whether it was a report (values, histograms, peaks).
    private func apply(
        _ bytes: UnsafeRawBufferPointer,
        decoded: Result<Frame, WireError>?,
        to client: inout ClientState,
        state: inout State,
        now: UInt64,
        warnings: inout [RefusalLine]
    ) -> Result<Bool, FrameRejection> {
        let reader: FrameReader
        do { reader = try FrameDecoder.open(bytes) } catch { return .failure(FrameRejection(error)) }
        if reader.kind != .hello && client.hello == nil { return .failure(.noHello) }
        switch reader.kind {
        case .values:
            return applyValues(reader, to: &client, stats: &state.stats).map { true }
        case .peaks:
            return applyPeaks(reader, to: &client, state: &state, now: now, warnings: &warnings).map { true }
        case .goodbye:
            guard (try? FrameDecoder.decode(bytes)) != nil else { return .failure(.trailingBytes) }
            client.saidGoodbye = true
            return .success(false)
        case .hello, .declare, .histograms, .retire:
            let frame: Frame
            do {
                frame = try (decoded ?? Result { () throws(WireError) in try FrameDecoder.decode(bytes) }).get()
            } catch {
                return .failure(FrameRejection(error))
            }
            switch frame {
            case .hello(let hello):
                return applyHello(hello, to: &client, state: &state).map { false }
            case .declare(let declarations):
                for declaration in declarations {
                    declare(declaration, in: &client, state: &state, warnings: &warnings)
                }
                return .success(false)
            case .histograms(let updates):
                return applyHistograms(updates, to: &client, stats: &state.stats).map { true }
            case .retire(let ids):
                for id in ids { retire(id, in: &client, state: &state) }
                if client.needsCompaction { client.compact() }
                return .success(false)
            case .values, .peaks, .goodbye:
                return .success(false)
            }
        }
    }

    private func applyHello(
        _ hello: Hello,
        to client: inout ClientState,
        state: inout State
    ) -> Result<Void, FrameRejection> {
        if client.hello != nil { return .failure(.duplicateHello) }
        var names = Set<String>()
        // `le` is reserved with `process` and `pid`: a hello label is added to every series of the
        // connection, so on a histogram it would sit beside the bucket's own `le`, a line that neither
        // format allows (promtool refuses it). A declaration's `le` is refused only on histograms, but a
        // hello comes before the declarations, so its `le` is refused whatever they turn out to be.
        for label in hello.labels {
            guard Names.isValidLabelName(label.name), label.name != "process", label.name != "pid",
                label.name != "le", names.insert(label.name).inserted
            else { return .failure(.invalidHello) }
        }
        let identity = [Label("process", hello.process), Label("pid", String(client.peer.pid))]
        let labelText = Escaping.labelText(identity + hello.labels)
        let connectionBytes = Self.connectionLineBytes(connectionLabels: labelText.count)
        // A hello late enough that a connection accepted after this one, from a process started since
        // under the same pid, said hello first: this connection's process had exited when that one
        // connected (a descendant holds it), so its pid now names the other process. It is closed as
        // if taken over, and, as a taken-over one does, reconnects under its own pid.
        if state.clients.values.contains(where: { $0.hello != nil && Self.hadExited(client, when: $0) }) {
            client.superseded = true
            return .success(())
        }
        // This hello takes over from earlier clients of its pid (never 0: refused at connect). Their
        // series go at once, as at the end of a grace period; a connected one is closed at its next
        // frame. Taken over are:
        // - Those under the same process name, whose series would otherwise be exposed twice: the same
        //   process reconnecting, or an exited one whose pid this process now has. Start times are not
        //   needed to decide: whichever it was, the pid is this connection's now, and a reconnect whose
        //   start time `/proc` hides (`hidepid`) must not leave its old series beside the new ones.
        // - Those under any name whose process had exited when this one connected (`hadExited`: the pid
        //   was reused). Kept, they would show through their grace period a pid that now belongs to
        //   another process. One still connected is a connection a descendant inherited from the exited
        //   process: its series name a pid that is not its sender's; closed, it reconnects under its own.
        // Connections of one process under different names stay side by side.
        for (other, earlier) in state.clients
        where earlier.peer.pid == client.peer.pid
            && (earlier.hello?.process == hello.process
                || (earlier.hello != nil && Self.hadExited(earlier, when: client)))
        {
            if !earlier.connected { Self.releaseGraceHeld(earlier, in: &state) }
            removeSeries(of: earlier, from: &state)
            var gone = earlier
            Self.dropPending(of: &gone, in: &state)
            Self.dropConflicted(of: &gone, in: &state)
            if earlier.connected {
                var retired = ClientState(
                    connection: other, peer: earlier.peer, processStartTicks: earlier.processStartTicks)
                retired.superseded = true
                state.clients[other] = retired
            } else {
                state.clients[other] = nil
            }
        }
        // The connection's own lines count against the overall budget like series: 4,096 connections
        // with 8 KiB of hello labels each would otherwise add about 270 MB to every scrape, past any
        // budget. Checked after the takeover above, which may have freed room. Refused, the connection is
        // closed: without a hello it can report nothing.
        while state.labelBytes + state.families.helpBytes + connectionBytes > limits.maxLabelBytes {
            guard evictGraceHeld(&state) else {
                client.refused = .byteLimit
                return .success(())
            }
        }
        client.hello = hello
        client.labelText = labelText
        client.connectionBytes = connectionBytes
        state.labelBytes += connectionBytes
        return .success(())
    }

    /// Whether the process that opened `earlier`'s connection had exited by the time `later`'s was
    /// opened, under the same pid: the start times read then (in accept order, which connection ids
    /// follow) differ. Never when either is unknown: nil matches nothing, not even nil. A connection
    /// opened after `later`'s never counts, as its start time is the newer reading.
    private static func hadExited(_ earlier: ClientState, when later: ClientState) -> Bool {
        guard earlier.peer.pid == later.peer.pid, earlier.connection.rawValue < later.connection.rawValue,
            let before = earlier.processStartTicks, let after = later.processStartTicks
        else { return false }
        return before != after
    }

    private func declare(
        _ declaration: SeriesDeclaration, in client: inout ClientState, state: inout State,
        warnings: inout [RefusalLine]
    ) {
        // Declared again: the same declaration changes nothing, as for a waiting one (counted again as a
        // conflict, it lost its place among the declarations kept on its name); another one takes the
        // place of the kept one.
        if let kept = client.conflicted[declaration.id] {
            if kept.declaration == declaration { return }
            Self.forgetConflicted(declaration.id, of: &client, in: &state)
        }
        let existing = client.indexByID[declaration.id]
        if existing == ClientState.pendingID, let waiting = client.pending[declaration.id] {
            // Declared again while it waits: the same declaration changes nothing, as for an admitted
            // id; another one is a duplicate, and the waiting one stays.
            if waiting.hash != SeriesIdentity.hash(declaration) {
                noteDropped(declaration, .duplicateSeries, of: client, state: &state, warnings: &warnings)
            }
            return
        }
        // A new series behind declarations that wait for room it would need waits behind them: else
        // a client retiring and declaring at a cap took every place freed before the waiting ones had
        // their turn, for as long as it kept at it.
        let result: Result<Void, SeriesRejection>
        if existing.map({ $0 < 0 }) ?? true, let ahead = waitingAhead(of: &client, state: state) {
            result = .failure(ahead)
        } else {
            result = admit(declaration, in: &client, state: &state)
        }
        guard case .failure(let reason) = result else {
            if existing == ClientState.droppedID { client.droppedIDs -= 1 }
            return
        }
        let waits = wait(declaration, refusedFor: reason, in: &client, state: &state)
        noteDropped(declaration, reason, of: client, waiting: waits, state: &state, warnings: &warnings)
        if waits {
            if existing == ClientState.droppedID { client.droppedIDs -= 1 }
            return
        }
        // Remember refused ids (boundedly) so their updates are ignored rather than refused as unknown.
        // An id retired and declared anew is marked dropped too: left marked retired, a declaration of
        // it in conflict was not kept (`keepConflicted` keeps only ids marked dropped), and never shown.
        let marker = client.indexByID[declaration.id]
        if marker == nil || marker == ClientState.retiredID, client.droppedIDs < limits.maxSeriesPerClient {
            client.indexByID[declaration.id] = ClientState.droppedID
            client.droppedIDs += 1
        }
        if reason == .conflict { keepConflicted(declaration, of: &client, in: &state) }
    }

    /// The names on which a declaration can clash with a family: its name as shown, and the names its
    /// family would write besides (`FamilyTable.admit` refuses a clash on any of them).
    private static func conflictNames(of declaration: SeriesDeclaration) -> [String] {
        let shown = declaration.type.exposedName(declaration.name)
        return [shown] + declaration.type.derivedNames(of: shown)
    }

    /// Keeps a declaration refused as a `conflict` with a family that can go, to be tried again once it
    /// has (`retryConflicted`). The client library declares each series once per connection: without
    /// this, a release that changed a metric's labels or type, started while the previous release's
    /// process still held the name (running, or in its grace period after a crash), never showed that
    /// metric until its process reconnected, long after the old series were gone. Not kept: a clash with
    /// the client library's own names (`ContractSeries`), which never go, an id not marked dropped (past
    /// the bound on those), or past the bytes waiting declarations may hold, counted apart.
    ///
    /// - Parameter stamp: when it was first refused, to keep its place among the kept ones tried again;
    ///   a new stamp when nil.
    private func keepConflicted(
        _ declaration: SeriesDeclaration, stamp: UInt64? = nil, of client: inout ClientState, in state: inout State
    ) {
        let shown = declaration.type.exposedName(declaration.name)
        let labelNames = declaration.labels.map(\.name).sorted()
        let names = Self.conflictNames(of: declaration)
        let cost = PendingDeclaration.keptCost(of: declaration, names: names)
        guard client.indexByID[declaration.id] == ClientState.droppedID,
            ContractSeries.admits(name: shown, type: declaration.type, labelNames: labelNames),
            client.conflictedBytes + cost <= limits.maxLabelBytesPerClient,
            state.conflictedBytes + cost <= limits.maxLabelBytes
        else { return }
        if stamp == nil { state.waitStamps &+= 1 }
        let stamp = stamp ?? state.waitStamps
        client.conflicted[declaration.id] = KeptDeclaration(declaration: declaration, stamp: stamp)
        client.conflictedBytes += cost
        state.conflictedBytes += cost
        state.conflictedCount += 1
        for name in names {
            state.conflictWaiters[name, default: [:]][client.connection, default: [:]][declaration.id] = stamp
        }
    }

    /// Forgets a declaration kept after a conflict (its id stays marked dropped).
    private static func forgetConflicted(_ id: UInt32, of client: inout ClientState, in state: inout State) {
        guard let declaration = client.conflicted.removeValue(forKey: id)?.declaration else { return }
        let names = conflictNames(of: declaration)
        let cost = PendingDeclaration.keptCost(of: declaration, names: names)
        client.conflictedBytes -= cost
        state.conflictedBytes -= cost
        state.conflictedCount -= 1
        // Its entry in `conflictQueue`, if due, is skipped when met.
        for name in names {
            guard var waiters = state.conflictWaiters.removeValue(forKey: name) else { continue }
            waiters[client.connection]?[id] = nil
            if waiters[client.connection]?.isEmpty == true { waiters[client.connection] = nil }
            if !waiters.isEmpty { state.conflictWaiters[name] = waiters }
        }
    }

    /// Forgets every declaration a connection that closed (or was taken over) kept after a conflict.
    private static func dropConflicted(of client: inout ClientState, in state: inout State) {
        for id in Array(client.conflicted.keys) { forgetConflicted(id, of: &client, in: &state) }
    }

    /// Takes series from a family and, when it goes, makes the declarations kept after a conflict on
    /// one of its names due for a try at the next tick, in the order they were refused. Each is queued
    /// once, and leaves the name's waiters until kept again: a client that frees a name in a loop
    /// queues nothing more meanwhile.
    private static func releaseFamily(_ index: Int, count: Int, in state: inout State) {
        guard let gone = state.families.release(index, count: count), !state.conflictWaiters.isEmpty else { return }
        var freed: [(stamp: UInt64, key: ConflictKey)] = []
        for name in [gone.name] + gone.type.derivedNames(of: gone.name) {
            guard let waiters = state.conflictWaiters.removeValue(forKey: name) else { continue }
            for (connection, ids) in waiters {
                for (id, stamp) in ids { freed.append((stamp, ConflictKey(connection: connection, id: id))) }
            }
        }
        // Oldest first: by connection and id, a connection accepted earlier, or a lower id, took the
        // name from a declaration that clashes with it too and was refused before it.
        freed.sort { $0.stamp < $1.stamp }
        for (_, key) in freed where state.conflictDue.insert(key).inserted { state.conflictQueue.append(key) }
    }

    /// Kept declarations tried again at a tick at most. A try costs about what admitting a declaration
    /// does (2 µs in the release build): were all due ones tried at once, a client keeping thousands
    /// refused on one name and retiring the series that holds it, frame after frame, had each small
    /// frame cost the ingest thread 21 ms (10,000 kept, measured). Ten ticks a second bound it to about
    /// 2 % of a core, and a release's renamed metric still shows within a tick or a few.
    static let conflictRetryBatch = 1_024

    /// Tries again, as new declarations of their connections, the declarations kept after a conflict
    /// that are due (a family of a name they clash on went), oldest first, `conflictRetryBatch` at most.
    /// Admitted, one is shown from its next value, counted no more; refused at a limit, it waits as any
    /// declaration does; in conflict again (another family took the name first), it is kept again.
    /// Costs nothing while none is due.
    ///
    /// Runs only with every connection in `State.clients`.
    private func retryConflicted(_ state: inout State) {
        guard state.conflictQueueHead < state.conflictQueue.count else { return }
        // Entries of declarations forgotten meanwhile (retired, or their connection closed) are skipped
        // when met; a client that keeps, frees and retires in a loop would otherwise grow the queue
        // faster than the ticks go through it.
        if state.conflictQueue.count - state.conflictQueueHead > 2 * state.conflictedCount + Self.conflictRetryBatch {
            let live = state.conflictQueue[state.conflictQueueHead...].filter { key in
                state.clients[key.connection]?.conflicted[key.id] != nil
            }
            state.conflictDue = Set(live)
            state.conflictQueue = live
            state.conflictQueueHead = 0
        }
        var tried = 0
        while tried < Self.conflictRetryBatch, state.conflictQueueHead < state.conflictQueue.count {
            let key = state.conflictQueue[state.conflictQueueHead]
            state.conflictQueueHead += 1
            state.conflictDue.remove(key)
            guard let slot = state.clients.index(forKey: key.connection),
                let kept = state.clients.values[slot].conflicted[key.id]
            else { continue }
            let declaration = kept.declaration
            tried += 1
            state.conflictTries += 1
            // Out of the dictionary while it changes, so that its tables are not copied.
            var client = state.clients.remove(at: slot).value
            Self.forgetConflicted(key.id, of: &client, in: &state)
            let result: Result<Void, SeriesRejection>
            if let ahead = waitingAhead(of: &client, state: state) {
                result = .failure(ahead)
            } else {
                result = admit(declaration, in: &client, state: &state)
            }
            switch result {
            case .success:
                client.droppedIDs -= 1
            case .failure(.conflict):
                keepConflicted(declaration, stamp: kept.stamp, of: &client, in: &state)
            case .failure(let reason):
                if wait(declaration, refusedFor: reason, in: &client, state: &state) { client.droppedIDs -= 1 }
            }
            state.clients[key.connection] = client
        }
        if state.conflictQueueHead == state.conflictQueue.count {
            state.conflictQueue.removeAll(keepingCapacity: state.conflictQueue.count <= 1_024)
            state.conflictQueueHead = 0
        } else if state.conflictQueueHead >= 4_096, 2 * state.conflictQueueHead >= state.conflictQueue.count {
            state.conflictQueue.removeFirst(state.conflictQueueHead)
            state.conflictQueueHead = 0
        }
    }

    /// Counts and logs a declaration not admitted: once, however long it then waits.
    private func noteDropped(
        _ declaration: SeriesDeclaration, _ reason: SeriesRejection, of client: borrowing ClientState,
        waiting: Bool = false, state: inout State, warnings: inout [RefusalLine]
    ) {
        state.stats.droppedSeries[reason, default: 0] += 1
        // Named as it would be exposed, with `_total`, since that is the name that conflicts.
        let line = log?.seriesDropped(
            reason,
            name: declaration.type.exposedName(declaration.name),
            type: declaration.type, labelNames: declaration.labels.map(\.name), client: client,
            limit: limit(of: reason), waiting: waiting)
        if let line { warnings.append(line) }
    }

    /// Keeps a declaration refused at a limit whose room can free up, to be admitted once it does
    /// (`admitWaiting`), and says whether it does. The client library declares each series once per
    /// connection and cannot see a refusal, so without this a few seconds of another client at
    /// `--ingest.max-series` (or the byte budget, or the uid's cap) would remove its series until it
    /// reconnects. The connection's own cap frees only when it retires series, but it may well do so.
    ///
    /// Bounded like the series themselves, by their own copy of the limits: a connection keeps at most
    /// `maxSeriesPerClient` waiting declarations and `maxLabelBytesPerClient` bytes of them, all
    /// connections together `maxLabelBytes`, counted by `PendingDeclaration.cost` (what one holds in
    /// memory, not what it would add to `/metrics`: waiting, it adds nothing). Past that, it is dropped
    /// as before. A declaration that could never be admitted does not wait: one that breaks a rule of
    /// its own (its name or labels), or whose lines alone take more bytes than the connection may ever
    /// hold (`canEverFit`).
    private func wait(
        _ declaration: SeriesDeclaration, refusedFor reason: SeriesRejection, in client: inout ClientState,
        state: inout State
    ) -> Bool {
        guard reason.canWait, client.pending.count < limits.maxSeriesPerClient else { return false }
        let cost = PendingDeclaration.cost(of: declaration)
        let shownName = declaration.type.exposedName(declaration.name)
        guard client.pendingBytes + cost <= limits.maxLabelBytesPerClient,
            state.pendingBytes + cost <= limits.maxLabelBytes,
            case .success = Self.checkNames(declaration, shownName: shownName, hello: client.hello),
            canEverFit(declaration, shownName: shownName, of: client)
        else { return false }
        let first = client.pending.isEmpty
        state.waitStamps &+= 1
        client.enqueuePending(
            declaration, reason: reason, cost: cost, hash: SeriesIdentity.hash(declaration), stamp: state.waitStamps)
        state.pendingBytes += cost
        // Behind others of the connection, it is tried after them; first, it takes its place in the
        // daemon's order, or is set aside at a limit of the connection's or its uid's own.
        if first {
            queueOrPark(&client, after: reason, declaration: declaration, stamp: state.waitStamps, state: &state)
        }
        return true
    }

    /// What a new declaration of `client` would wait behind, by the limit it would wait on: the
    /// connection's own waiting declarations (they are admitted in order), one blocked at a limit
    /// every declaration needs room under, or a connection of the same uid set aside at its cap. Nil
    /// when it may be tried at once.
    private func waitingAhead(of client: inout ClientState, state: borrowing State) -> SeriesRejection? {
        if let head = client.waitingHead() { return client.pending[head.id]?.reason }
        if let blocked = state.waitBlocked { return blocked }
        // A try stopped at its batch: the ones left are older.
        if state.waitRetryForced && !state.waitQueue.isEmpty { return .globalLimit }
        if limits.maxSeriesPerUID > 0, state.parkedByUID[client.peer.uid] != nil { return .uidLimit }
        return nil
    }

    /// Puts a connection whose oldest waiting declaration was just refused at `reason` in the daemon's
    /// order, under the declaration's stamp, or sets it aside until its own limit frees: whatever else
    /// goes, it could not fit, and trying it at every series gone would cost a check per waiting
    /// connection each time. Returns whether the limit is one every declaration needs room under.
    @discardableResult
    private func queueOrPark(
        _ client: inout ClientState, after reason: SeriesRejection, declaration: SeriesDeclaration, stamp: UInt64,
        state: inout State
    ) -> Bool {
        switch reason {
        case .clientLimit:
            client.waiting = .parkedOnOwn
        case .uidLimit:
            client.waiting = .parkedOnUID
            let uid = client.peer.uid
            state.parkedByUID[uid, default: ParkedUID()].park(stamp: stamp, connection: client.connection)
            // Connections of the uid that park and close while one stays parked (so the uid is never
            // freed) would otherwise leave a stale ticket each, for good.
            if let parked = state.parkedByUID[uid], parked.queue.count > 2 * parked.count + 64 {
                Self.compactParked(uid, keeping: client.connection, in: &state)
            }
        case .byteLimit where exceedsOwnBytes(declaration, of: client):
            client.waiting = .parkedOnOwn
        default:
            client.waiting = .queued
            state.waitQueue.push(stamp: stamp, connection: client.connection)
            return true
        }
        return false
    }

    /// Whether a declaration refused at `byte_limit` ran into the connection's own budget rather than
    /// all connections': only the connection's own retires make room under it.
    private func exceedsOwnBytes(_ declaration: SeriesDeclaration, of client: borrowing ClientState) -> Bool {
        let bytes = Self.chargedBytes(
            name: declaration.type.exposedName(declaration.name),
            labelText: Escaping.labelText(declaration.labels).count, connectionLabels: client.labelText.count,
            bounds: declaration.type == .histogram ? declaration.bounds.count : nil)
        return client.labelBytes + bytes > limits.maxLabelBytesPerClient
    }

    /// Whether the declaration's lines fit the byte budgets once everything else the connection and
    /// the daemon hold has gone, but the connection's own lines. One that does not (a histogram of 256
    /// bounds is 259 lines: with its and the hello's labels at 65 KB, 16.8 MB, past the default 16 MiB) is
    /// refused at `byte_limit` at every retry, and as retries go in order and stop at the first refused,
    /// it kept every declaration refused after it waiting for the connection's life, with room free.
    private func canEverFit(
        _ declaration: SeriesDeclaration, shownName: String, of client: borrowing ClientState
    ) -> Bool {
        let bytes = Self.chargedBytes(
            name: shownName, labelText: Escaping.labelText(declaration.labels).count,
            connectionLabels: client.labelText.count,
            bounds: declaration.type == .histogram ? declaration.bounds.count : nil)
        return bytes <= limits.maxLabelBytesPerClient && bytes + client.connectionBytes <= limits.maxLabelBytes
    }

    /// Waiting declarations a try admits at most: about what one declare frame holds, so that a long
    /// backlog does not hold the lock for long. The rest are admitted, in order, at the next frame of
    /// any connection or the next tick.
    static let pendingRetryBatch = 1_024

    /// Gives room freed since the last try to the waiting declarations, oldest first over all
    /// connections: run before and after a frame, and at the tick, whenever a series went (or may be
    /// made to: a client gone into its grace period) since. It goes through the connections in the
    /// order of their oldest waiting declaration, admitting each connection's in the order refused, and
    /// stops at the first one refused at a limit every declaration needs room under (the daemon's
    /// series cap, all connections' bytes): room freed later is kept for it, ahead of any other. One
    /// refused at its own connection's limit or its uid's sets its connection aside (`queueOrPark`) and
    /// the try goes on; the try of a connection set aside resumes once a series of that connection or
    /// uid goes. So a try costs one failed check, the connections whose limit freed, and what it admits.
    /// One refused now for what other series hold is not counted again: dropped for good when its name
    /// and labels are under a second id of the connection, kept until that family goes when it is in
    /// conflict with one (`keepConflicted`, tried again at the tick once that family went).
    ///
    /// Runs only with every connection in `State.clients`.
    private func admitWaiting(_ state: inout State) {
        state.waitRetryForced = false
        state.waitBlocked = nil
        queueRequeued(&state)
        // Stale tickets (their declaration admitted, retired or closed) are dropped at the top, or all
        // at once when they outnumber the connections, so a client retiring its oldest waiting
        // declaration in a loop leaves no trail.
        if state.waitQueue.count > 2 * state.clients.count + 64 {
            state.waitQueue.compact { ticket in
                guard let slot = state.clients.index(forKey: ticket.connection),
                    state.clients.values[slot].waiting == .queued
                else { return false }
                return state.clients.values[slot].waitingHead()?.stamp == ticket.stamp
            }
        }
        var admitted = 0
        // Admitting may evict a client held for its grace period, freeing room under its uid's cap.
        trying: while !state.requeue.isEmpty || !state.freedUIDs.isEmpty || !state.waitQueue.isEmpty {
            queueRequeued(&state)
            guard let ticket = state.waitQueue.top else { break }
            guard let slot = state.clients.index(forKey: ticket.connection),
                state.clients.values[slot].waiting == .queued,
                let head = state.clients.values[slot].waitingHead(), head.stamp == ticket.stamp
            else {
                state.waitQueue.pop()
                continue
            }
            if admitted == Self.pendingRetryBatch {
                state.waitRetryForced = true
                break
            }
            // Out of the dictionary while it changes, so that its tables are not copied.
            var client = state.clients.remove(at: slot).value
            let declaration = client.pending[head.id]!.declaration
            state.waitTries &+= 1
            switch admit(declaration, in: &client, state: &state) {
            case .success:
                admitted += 1
                state.pendingBytes -= client.removePending(head.id)
            case .failure(let reason) where reason.canWait:
                client.pending[head.id]?.reason = reason
                state.waitQueue.pop()
                let blocksAll = queueOrPark(
                    &client, after: reason, declaration: declaration, stamp: head.stamp, state: &state)
                // Set aside at its own limit: the place under its uid's cap it may have been queued
                // again for (`queueRequeued`) goes to the next of the uid set aside.
                if client.waiting == .parkedOnOwn { Self.uidFreed(client.peer.uid, in: &state) }
                state.clients[ticket.connection] = client
                if blocksAll {
                    state.waitBlocked = reason
                    break trying
                }
                continue
            case .failure(let reason):
                state.pendingBytes -= client.removePending(head.id)
                Self.uidFreed(client.peer.uid, in: &state)
                if client.droppedIDs < limits.maxSeriesPerClient {
                    client.indexByID[head.id] = ClientState.droppedID
                    client.droppedIDs += 1
                } else {
                    client.indexByID[head.id] = nil
                }
                if reason == .conflict { keepConflicted(declaration, stamp: head.stamp, of: &client, in: &state) }
            }
            state.waitQueue.pop()
            if let next = client.waitingHead() {
                state.waitQueue.push(stamp: next.stamp, connection: ticket.connection)
            } else {
                client.waiting = .idle
            }
            state.clients[ticket.connection] = client
        }
        // Admitting may have evicted clients held for their grace period: what that freed was tried, or
        // is queued to be.
        queueRequeued(&state)
        state.waitCheckedAt = state.seriesFreed
    }

    /// Puts the connections whose limit freed since they were set aside back in the order, under the
    /// stamp of their oldest waiting declaration. Of those set aside at a uid's cap, only the oldest, as
    /// many as the uid has room for (one at least, as room may be held by clients in their grace
    /// period): queueing all of them, each time a series of the uid went, cost a try of every one (all
    /// but the first refused at the cap again), 4,000 of them for each retire of a client of the uid.
    private func queueRequeued(_ state: inout State) {
        for uid in state.freedUIDs {
            guard var parked = state.parkedByUID.removeValue(forKey: uid) else { continue }
            parked.freed = false
            let used = state.usageByUID[uid]?.series ?? 0
            var room = max(1, limits.maxSeriesPerUID - used)
            while room > 0, let ticket = parked.queue.top {
                parked.queue.pop()
                guard let slot = state.clients.index(forKey: ticket.connection),
                    state.clients.values[slot].waiting == .parkedOnUID,
                    state.clients.values[slot].waitingHead()?.stamp == ticket.stamp
                else { continue }
                state.clients.values[slot].waiting = .queued
                state.waitQueue.push(stamp: ticket.stamp, connection: ticket.connection)
                parked.count -= 1
                room -= 1
            }
            if parked.count > 0 {
                // Tickets of connections no longer set aside (closed, retired) are dropped here, if not
                // at the top, so a uid's queue stays within twice the connections set aside.
                state.parkedByUID[uid] = parked
                if parked.queue.count > 2 * parked.count + 64 { Self.compactParked(uid, keeping: nil, in: &state) }
            }
        }
        state.freedUIDs.removeAll(keepingCapacity: state.freedUIDs.count <= 64)
        guard !state.requeue.isEmpty else { return }
        for connection in state.requeue {
            guard let slot = state.clients.index(forKey: connection) else { continue }
            guard state.clients.values[slot].waiting == .requeued else { continue }
            state.clients.values[slot].waiting = .queued
            if let head = state.clients.values[slot].waitingHead() {
                state.waitQueue.push(stamp: head.stamp, connection: connection)
            }
        }
        state.requeue.removeAll(keepingCapacity: state.requeue.count <= 64)
    }

    /// Forgets a waiting declaration of `id` that goes without being admitted (retired). The next one of
    /// its connection takes its place in the order; a try is due, as it may have been what held the
    /// others back.
    private static func forgetPending(_ id: UInt32, of client: inout ClientState, in state: inout State) {
        let wasHead = client.waitingHead()?.id == id
        state.pendingBytes -= client.removePending(id)
        state.waitRetryForced = true
        if client.pending.isEmpty {
            unpark(&client, in: &state)
        } else if wasHead, client.waiting == .queued, let next = client.waitingHead() {
            state.waitQueue.push(stamp: next.stamp, connection: client.connection)
        } else if wasHead, client.waiting == .parkedOnOwn {
            // Set aside by what the retired one needed of the connection's own bytes: the next may
            // need less. (At the connection's series cap it is only set aside again at its try.)
            client.waiting = .requeued
            state.requeue.append(client.connection)
        }
    }

    /// Takes a connection out of the waiting ones' order: its tickets go stale, and it leaves its uid's
    /// connections set aside.
    private static func unpark(_ client: inout ClientState, in state: inout State) {
        let uid = client.peer.uid
        if client.waiting == .parkedOnUID {
            // Its ticket goes stale in the uid's queue, dropped when met or compacted.
            state.parkedByUID[uid]?.count -= 1
            if state.parkedByUID[uid]?.count == 0 { state.parkedByUID[uid] = nil }
        } else if client.waiting == .queued {
            // It may have been queued again for a place under its uid's cap that it now leaves free.
            uidFreed(uid, in: &state)
        }
        client.waiting = .idle
    }

    /// Forgets the waiting declarations of a connection that closed (or was taken over): it can report
    /// nothing more.
    private static func dropPending(of client: inout ClientState, in state: inout State) {
        guard !client.pending.isEmpty || client.waiting != .idle else { return }
        state.pendingBytes -= client.pendingBytes
        client.pending = [:]
        client.pendingOrder = []
        client.pendingHead = 0
        client.pendingBytes = 0
        unpark(&client, in: &state)
        state.waitRetryForced = true
    }

    /// Drops the stale tickets of a uid's connections set aside: those of connections no longer set
    /// aside at its cap, or under another stamp. `keeping` is one just set aside, out of `State.clients`.
    private static func compactParked(_ uid: UInt32, keeping current: ConnectionID?, in state: inout State) {
        guard var parked = state.parkedByUID.removeValue(forKey: uid) else { return }
        parked.queue.compact { ticket in
            if ticket.connection == current { return true }
            guard let slot = state.clients.index(forKey: ticket.connection) else { return false }
            return state.clients.values[slot].waiting == .parkedOnUID
                && state.clients.values[slot].waitingHead()?.stamp == ticket.stamp
        }
        state.parkedByUID[uid] = parked
    }

    /// A series of `uid` went: its oldest connections set aside at the uid's cap are tried again
    /// (`queueRequeued`). Only marked here, once: the uid's entry stays until they are queued, so that
    /// a new declaration of the uid meanwhile still waits behind them.
    private static func uidFreed(_ uid: UInt32, in state: inout State) {
        guard state.parkedByUID[uid]?.freed == false else { return }
        state.parkedByUID[uid]?.freed = true
        state.freedUIDs.append(uid)
    }

    /// Counts an entry of a values, histograms or peaks frame for an id not shown: when its declaration
    /// waits, by the limit it waits on; when it is kept after a conflict, as `conflict`, so that a name
    /// held by another family shows as values lost for as long as it lasts, not only once. (Entries for
    /// ids dropped for good or retired are not counted.)
    @inline(__always)
    private static func countSkipped(
        _ id: UInt32, marker: Int32, in client: borrowing ClientState, stats: inout Stats
    ) {
        if marker == ClientState.pendingID, let reason = client.pending[id]?.reason {
            stats.droppedValues[reason, default: 0] += 1
        } else if marker == ClientState.droppedID, !client.conflicted.isEmpty, client.conflicted[id] != nil {
            stats.droppedValues[.conflict, default: 0] += 1
        }
    }

    /// Checks what a declaration's own name and labels must meet, whatever else the daemon holds, and
    /// returns its sorted label names.
    private static func checkNames(
        _ declaration: SeriesDeclaration, shownName: String, hello: Hello?
    ) -> Result<[String], SeriesRejection> {
        guard Names.isValidMetricName(shownName) else { return .failure(.invalidName) }
        if DaemonSeries.reserves(shownName, type: declaration.type) { return .failure(.reservedName) }
        var labelNames: [String] = []
        for label in declaration.labels {
            guard Names.isValidLabelName(label.name) else { return .failure(.invalidName) }
            labelNames.append(label.name)
        }
        let constantNames = Set(["process", "pid"] + (hello?.labels.map(\.name) ?? []))
        let sortedNames = labelNames.sorted()
        if Set(sortedNames).count != sortedNames.count || sortedNames.contains(where: constantNames.contains)
            || (declaration.type == .histogram && sortedNames.contains("le"))
        {
            return .failure(.reservedLabel)
        }
        return .success(sortedNames)
    }

    private func admit(
        _ declaration: SeriesDeclaration,
        in client: inout ClientState,
        state: inout State
    ) -> Result<Void, SeriesRejection> {
        // An id admitted before; one retired, dropped or waiting (tried again by `admitWaiting`) may
        // be declared anew.
        if let existing = client.indexByID[declaration.id], existing >= 0 {
            if client.declarationHashes[Int(existing)] == SeriesIdentity.hash(declaration) { return .success(()) }
            return .failure(.duplicateSeries)
        }
        // Limits first: a client flooding declarations past its cap is refused before any hashing or
        // validation, so the lock it holds per frame stays short and scrapes are not starved.
        guard client.liveCount < limits.maxSeriesPerClient else { return .failure(.clientLimit) }
        let uid = client.peer.uid
        if limits.maxSeriesPerUID > 0 {
            while state.usageByUID[uid, default: UIDUsage()].series >= limits.maxSeriesPerUID {
                guard evictGraceHeld(&state, uid: uid) else { return .failure(.uidLimit) }
            }
        }
        while state.seriesTotal >= limits.maxSeries {
            guard evictGraceHeld(&state) else { return .failure(.globalLimit) }
        }
        // Counters are exposed with the `_total` suffix both formats expect.
        let shownName = declaration.type.exposedName(declaration.name)
        // Rendered here, before the budget is checked, so that it counts what is stored: escaping can
        // double a label value (`"` becomes `\"`).
        let labelText = Escaping.labelText(declaration.labels)
        let bytes = Self.chargedBytes(
            name: shownName, labelText: labelText.count, connectionLabels: client.labelText.count,
            bounds: declaration.type == .histogram ? declaration.bounds.count : nil)
        guard client.labelBytes + bytes <= limits.maxLabelBytesPerClient else { return .failure(.byteLimit) }
        // A new family's help is held once, whoever declared it, so it counts only overall.
        let help = declaration.help.isEmpty ? "Reported by a TaskWatch client without help text." : declaration.help
        let helpBytes = state.families.contains(shownName) ? 0 : help.utf8.count
        while state.labelBytes + state.families.helpBytes + helpBytes + bytes > limits.maxLabelBytes {
            guard evictGraceHeld(&state) else { return .failure(.byteLimit) }
        }
        let fullHash = SeriesIdentity.hash(declaration)
        var declaration = declaration
        declaration.name = shownName
        let sortedNames: [String]
        switch Self.checkNames(declaration, shownName: shownName, hello: client.hello) {
        case .success(let names): sortedNames = names
        case .failure(let reason): return .failure(reason)
        }
        let identity = SeriesIdentity.hash(name: declaration.name, labels: declaration.labels)
        if client.identities[identity] != nil { return .failure(.duplicateSeries) }
        let familyIndex: Int
        switch state.families.admit(name: declaration.name, type: declaration.type, labelNames: sortedNames, help: help)
        {
        case .success(let index): familyIndex = index
        case .failure(let reason): return .failure(reason)
        }
        let index = client.table.append(
            family: familyIndex,
            type: declaration.type,
            labelText: labelText,
            bounds: declaration.type == .histogram ? declaration.bounds : nil
        )
        client.indexByID[declaration.id] = index
        client.identities[identity] = index
        client.declarationHashes.append(fullHash)
        client.familyCounts[familyIndex, default: 0] += 1
        client.labelBytes += bytes
        state.labelBytes += bytes
        state.families.retain(familyIndex)
        state.seriesTotal += 1
        state.usageByUID[uid, default: UIDUsage()].series += 1
        return .success(())
    }

    /// Stops showing the series of `id` (and its added `_peak`), gives back its place under every limit
    /// and forgets its identity, so it may be declared again, under this id or another. A waiting
    /// declaration of `id` is forgotten, and an id whose declaration was dropped is marked retired (its
    /// place among the dropped ids given back). An id that is unknown or already retired changes
    /// nothing: a retire can pass a declaration the daemon refused, and repeating one does no harm.
    private func retire(_ id: UInt32, in client: inout ClientState, state: inout State) {
        guard let index = client.indexByID[id], index != ClientState.retiredID else { return }
        if index >= 0 {
            hide(Int(index), of: &client, state: &state)
            if let peak = client.peaks.removeValue(forKey: index) {
                hide(Int(peak.derivedIndex), of: &client, state: &state)
            }
            client.declaredPeaks.remove(index)
            client.refusedPeaks[index] = nil
        } else if index == ClientState.pendingID {
            Self.forgetPending(id, of: &client, in: &state)
        } else {
            client.droppedIDs -= 1
            Self.forgetConflicted(id, of: &client, in: &state)
        }
        // The id stays known, marked, for the next `maxSeriesPerClient` retirements: values the client
        // collected before it retired the series may still be on their way, and an unknown id would
        // refuse their frame. Only that long, so a client that keeps retiring new ids leaves no trail.
        client.indexByID[id] = ClientState.retiredID
        client.retiredIDs.append(id)
        if client.retiredIDs.count >= 2 * limits.maxSeriesPerClient {
            let forgotten = client.retiredIDs.count - limits.maxSeriesPerClient
            for old in client.retiredIDs.prefix(forgotten) where client.indexByID[old] == ClientState.retiredID {
                client.indexByID[old] = nil
            }
            client.retiredIDs.removeFirst(forgotten)
        }
    }

    /// Hides series `index` and gives back what it held. Its identity and bytes are worked out again
    /// from the stored name and labels rather than kept per series: retiring is rare, and 16
    /// bytes more a series took a million series from 81 to 103 bytes each (`make bench`).
    private func hide(_ index: Int, of client: inout ClientState, state: inout State) {
        guard client.retired.insert(Int32(index)).inserted else { return }
        let family = Int(client.table.family[index])
        // The client holds its families, so this one is still there until released below.
        let name = state.families.families[family]?.name ?? ""
        let labelText = client.table.labels(of: index)
        let labels = Escaping.labels(fromText: client.table.labelArena[labelText])
        client.identities[SeriesIdentity.hash(name: name, labels: labels)] = nil
        let bounds = client.table.histograms[Int32(index)].map { client.table.boundSets[$0.boundSet].bounds.count }
        let bytes = Self.chargedBytes(
            name: name, labelText: labelText.count, connectionLabels: client.labelText.count, bounds: bounds)
        client.table.values[index] = SeriesTable.unset
        Self.releaseFamily(family, count: 1, in: &state)
        client.familyCounts[family, default: 1] -= 1
        if client.familyCounts[family] == 0 { client.familyCounts[family] = nil }
        client.labelBytes -= bytes
        client.retiredLabelBytes += bytes
        state.labelBytes -= bytes
        state.seriesTotal -= 1
        state.seriesFreed &+= 1
        state.usageByUID[client.peer.uid, default: UIDUsage()].series -= 1
        Self.uidFreed(client.peer.uid, in: &state)
        if client.waiting == .parkedOnOwn {
            client.waiting = .requeued
            state.requeue.append(client.connection)
        }
    }

    /// What a series counts against the byte budget: about what it adds to `/metrics`. Each line it is
    /// shown on (one for a counter or gauge; for a histogram one per bound, `+Inf`, `_sum` and `_count`)
    /// holds its name as shown (a counter's with `_total`), its labels as stored, rendered and escaped
    /// (`name="value"`, comma-separated), the connection's labels (`process`, `pid`, the hello's), and
    /// about `lineOverhead` bytes more for the value, the separators and a bucket's suffix and `le`.
    static func chargedBytes(name: String, labelText: Int, connectionLabels: Int, bounds: Int?) -> Int {
        let lines = bounds.map { $0 + 3 } ?? 1
        return lines * (name.utf8.count + labelText + connectionLabels + lineOverhead)
    }

    static let lineOverhead = 32

    /// The lines the daemon adds for every connection that said hello, each with the connection's labels:
    /// its status and the six `/proc` series (`ExpositionRenderer.writeClientStatus`, `writeKernelSeries`).
    static let connectionLineNames = [
        "taskwatch_client_up", "taskwatch_client_last_report_timestamp_seconds",
        "swift_process_cpu_seconds_total", "swift_process_open_fds", "swift_process_resident_memory_bytes",
        "swift_process_start_time_seconds", "swift_process_threads", "swift_process_virtual_memory_bytes",
    ]

    /// What a connection's own lines count against `RegistryLimits.maxLabelBytes`, as `chargedBytes`
    /// counts a series' lines. Not against the connection's budget, which is for what it declares.
    static func connectionLineBytes(connectionLabels: Int) -> Int {
        connectionLineNames.reduce(0) { $0 + $1.utf8.count + connectionLabels + lineOverhead }
    }

    /// The limit a `client_limit` or `global_limit` drop ran into, for its log line.
    private func limit(of reason: SeriesRejection) -> Int? {
        switch reason {
        case .clientLimit: limits.maxSeriesPerClient
        case .globalLimit: limits.maxSeries
        case .uidLimit: limits.maxSeriesPerUID
        default: nil
        }
    }

    /// Resolves an id to a series index: nil for an id refused at declaration or retired, failure when
    /// unknown.
    private func lookup(_ id: UInt32, in client: ClientState) -> Result<Int?, FrameRejection> {
        guard let index = client.indexByID[id] else { return .failure(.unknownSeries) }
        return .success(index < 0 ? nil : Int(index))
    }

    /// Reads the `(id, value)` entries of a values or peaks frame and checks every one before any is
    /// applied, so a frame is taken whole or not at all: unknown ids and NaN are refused, ids refused at
    /// declaration are skipped, and `check` judges the rest by series index.
    ///
    /// Always inlined: this is the ingest hot path, and as a call of its own (with `check` as a closure
    /// and `client` passed by value) it cost 5–10 % of batched ingest throughput in retains, releases
    /// and the call itself (`perf record` of 100-update frames).
    @inline(__always)
    private func checkedEntries(
        _ reader: FrameReader,
        in client: ClientState,
        check: (Int, Double) -> FrameRejection?
    ) -> Result<ValueEntries, FrameRejection> {
        var reader = reader
        let entries: ValueEntries
        do { entries = try ValueEntries(from: &reader) } catch { return .failure(FrameRejection(error)) }
        for (id, value) in entries {
            switch lookup(id, in: client) {
            case .failure(let reason): return .failure(reason)
            case .success(nil): continue
            case .success(let index?):
                if value.isNaN { return .failure(.invalidValue) }
                if let reason = check(index, value) { return .failure(reason) }
            }
        }
        return .success(entries)
    }

    /// Applies absolute counter and gauge values. Every entry is checked before any is applied, so a
    /// frame is taken whole or not at all.
    private func applyValues(
        _ reader: FrameReader, to client: inout ClientState, stats: inout Stats
    ) -> Result<Void, FrameRejection> {
        let entries: ValueEntries
        switch checkedEntries(
            reader, in: client,
            check: { index, value in
                switch client.table.types[index] {
                case .gauge: return nil
                case .histogram: return .typeMismatch
                case .counter:
                    if !value.isFinite || value < 0 { return .invalidValue }
                    let current = client.table.values[index]
                    let decreased = current.bitPattern != SeriesTable.unset.bitPattern && value < current
                    return decreased ? .counterDecrease : nil
                }
            })
        {
        case .failure(let reason): return .failure(reason)
        case .success(let checked): entries = checked
        }
        for (id, value) in entries {
            let index = client.indexByID[id] ?? ClientState.droppedID
            guard index >= 0 else {
                Self.countSkipped(id, marker: index, in: client, stats: &stats)
                continue
            }
            client.table.values[Int(index)] = value
            if !client.peaks.isEmpty, let peak = client.peaks[index] {
                let derived = Int(peak.derivedIndex)
                let shown = client.table.values[derived]
                if shown.bitPattern == SeriesTable.unset.bitPattern || value > shown {
                    client.table.values[derived] = value
                }
            }
        }
        return .success(())
    }

    /// Records peak samples for gauges and keeps their derived `_peak` series current.
    private func applyPeaks(
        _ reader: FrameReader,
        to client: inout ClientState,
        state: inout State,
        now: UInt64,
        warnings: inout [RefusalLine]
    ) -> Result<Void, FrameRejection> {
        let entries: ValueEntries
        switch checkedEntries(
            reader, in: client,
            check: { index, _ in
                client.table.types[index] == .gauge ? nil : .typeMismatch
            })
        {
        case .failure(let reason): return .failure(reason)
        case .success(let checked): entries = checked
        }
        // No separate pass folds a frame's samples to one per gauge: they all carry this frame's `now`,
        // so they fall in one slot of the gauge's window, which keeps only their maximum (PeakWindow).
        for (id, value) in entries {
            let index = client.indexByID[id] ?? ClientState.droppedID
            guard index >= 0 else {
                Self.countSkipped(id, marker: index, in: client, stats: &state.stats)
                continue
            }
            if client.peaks[index] == nil {
                if client.declaredPeaks.contains(index) { continue }
                // Refused at a limit: tried again only once a series has gone somewhere, as nothing
                // else can make room.
                if client.refusedPeaks[index] == state.seriesFreed { continue }
                guard let derived = declarePeak(of: Int(index), in: &client, state: &state, warnings: &warnings)
                else { continue }
                client.refusedPeaks[index] = nil
                client.peaks[index] = PeakState(
                    derivedIndex: derived, window: PeakWindow(window: limits.peakWindowNanoseconds))
            }
            client.peaks[index]?.window.add(value, at: now)
            refreshPeak(of: index, in: &client, now: now)
        }
        // Only the gauges in the frame: refreshing all of them cost O(every gauge of the client) a
        // frame, so one-entry frames from a client with 10,000 gauges made each frame 10,000 times
        // the work. The others' windows move on at the tick, every 100 ms.
        return .success(())
    }

    /// Creates `<gauge>_peak` with the gauge's labels, under the same limits as a declaration.
    private func declarePeak(
        of index: Int, in client: inout ClientState, state: inout State, warnings: inout [RefusalLine]
    ) -> Int32? {
        guard let gauge = state.families.families[Int(client.table.family[index])] else { return nil }
        let name = gauge.name + "_peak"
        let labels = Array(client.table.labelArena[client.table.labels(of: index)])
        // The same identity a declaration of `<gauge>_peak` with these labels gets, so that either one
        // coming second is refused as `duplicate_series`, whichever order they arrive in: a hash of
        // the rendered bytes never matched a declaration's, and both series were exposed.
        let identity = SeriesIdentity.hash(name: name, labels: Escaping.labels(fromText: labels[...]))
        // Charged like a declared series: it is one more line on /metrics for every gauge with peaks.
        let bytes = Self.chargedBytes(
            name: name, labelText: labels.count, connectionLabels: client.labelText.count, bounds: nil)
        let help = "Highest value of \(gauge.name) sampled within the peak window."
        let helpBytes = state.families.contains(name) ? 0 : help.utf8.count
        let result: Result<Int, SeriesRejection>
        if client.identities[identity] != nil {
            result = .failure(.duplicateSeries)
        } else if let blocked = state.waitBlocked {
            // Room freed is kept for the declarations that wait for it, as from a new declaration.
            result = .failure(blocked)
        } else if limits.maxSeriesPerUID > 0, state.parkedByUID[client.peer.uid] != nil {
            result = .failure(.uidLimit)
        } else if client.liveCount >= limits.maxSeriesPerClient {
            result = .failure(.clientLimit)
        } else if state.seriesTotal >= limits.maxSeries {
            result = .failure(.globalLimit)
        } else if limits.maxSeriesPerUID > 0,
            state.usageByUID[client.peer.uid, default: UIDUsage()].series >= limits.maxSeriesPerUID
        {
            result = .failure(.uidLimit)
        } else if client.labelBytes + bytes > limits.maxLabelBytesPerClient
            || state.labelBytes + state.families.helpBytes + helpBytes + bytes > limits.maxLabelBytes
        {
            result = .failure(.byteLimit)
        } else {
            result = state.families.admit(name: name, type: .gauge, labelNames: gauge.labelNames, help: help)
        }
        switch result {
        case .failure(let reason):
            if reason == .duplicateSeries { client.declaredPeaks.insert(Int32(index)) }
            // Counted and logged once per gauge, however often it is tried again: one series dropped.
            guard client.refusedPeaks.updateValue(state.seriesFreed, forKey: Int32(index)) == nil else { return nil }
            state.stats.droppedSeries[reason, default: 0] += 1
            let line = log?.seriesDropped(
                reason, name: name, type: .gauge, labelNames: gauge.labelNames, client: client,
                limit: limit(of: reason))
            if let line { warnings.append(line) }
            return nil
        case .success(let familyIndex):
            let derived = client.table.append(family: familyIndex, type: .gauge, labelText: labels, bounds: nil)
            client.identities[identity] = derived
            client.declarationHashes.append(identity)
            client.familyCounts[familyIndex, default: 0] += 1
            client.labelBytes += bytes
            state.labelBytes += bytes
            state.families.retain(familyIndex)
            state.seriesTotal += 1
            state.usageByUID[client.peer.uid, default: UIDUsage()].series += 1
            return derived
        }
    }

    /// Sets every derived peak to the window's maximum, never below the gauge's current value.
    /// Every gauge's derived peak, at the daemon's tick. In place, through the dictionary's indices: a
    /// lookup and a store of each `PeakState` by key (as `refreshPeak` does for one gauge) took an idle
    /// release daemon with 50,000 gauges with peaks to 5.8–6.6 % of a core, this 3.1–3.9 %
    /// (`scripts/bench-peak-tick.py NEW OLD`).
    private func refreshPeaks(of client: inout ClientState, now: UInt64) {
        var index = client.peaks.startIndex
        while index != client.peaks.endIndex {
            let gauge = Int(client.peaks.keys[index])
            let derived = Int(client.peaks.values[index].derivedIndex)
            var shown = client.table.values[gauge]
            if let windowMax = client.peaks.values[index].window.maximum(at: now) {
                shown = shown.bitPattern == SeriesTable.unset.bitPattern ? windowMax : max(shown, windowMax)
            }
            // Unchanged, not stored: the first store after a scrape's snapshot copies the whole table.
            if client.table.values[derived].bitPattern != shown.bitPattern { client.table.values[derived] = shown }
            client.peaks.formIndex(after: &index)
        }
    }

    /// Sets one gauge's derived peak to its window's maximum, never below the gauge's current value.
    private func refreshPeak(of gauge: Int32, in client: inout ClientState, now: UInt64) {
        guard var peak = client.peaks[gauge] else { return }
        var shown = client.table.values[Int(gauge)]
        if let windowMax = peak.window.maximum(at: now) {
            shown = shown.bitPattern == SeriesTable.unset.bitPattern ? windowMax : max(shown, windowMax)
        }
        client.table.values[Int(peak.derivedIndex)] = shown
        client.peaks[gauge] = peak
    }

    /// Applies absolute histogram states, whole frame or nothing.
    private func applyHistograms(
        _ updates: [HistogramUpdate],
        to client: inout ClientState,
        stats: inout Stats
    ) -> Result<Void, FrameRejection> {
        for update in updates {
            switch lookup(update.id, in: client) {
            case .failure(let reason): return .failure(reason)
            case .success(nil): continue
            case .success(let index?):
                guard let slot = client.table.histograms[Int32(index)] else { return .failure(.typeMismatch) }
                let bounds = client.table.boundSets[slot.boundSet].bounds
                if update.buckets.count != bounds.count + 1 { return .failure(.bucketMismatch) }
                if update.sum.isNaN { return .failure(.invalidValue) }
                // The exposition adds the buckets up into the cumulative `le` lines and `_count`: a
                // total past UInt64.max would wrap there, giving falling buckets and a wrong count.
                var total: UInt64 = 0
                for count in update.buckets {
                    let (next, overflow) = total.addingReportingOverflow(count)
                    if overflow { return .failure(.invalidValue) }
                    total = next
                }
                for (offset, count) in update.buckets.enumerated()
                where count < client.table.bucketCounts[slot.offset + offset] {
                    return .failure(.counterDecrease)
                }
            }
        }
        for update in updates {
            let index = client.indexByID[update.id] ?? ClientState.droppedID
            guard index >= 0, let slot = client.table.histograms[index] else {
                Self.countSkipped(update.id, marker: index, in: client, stats: &stats)
                continue
            }
            client.table.values[Int(index)] = update.sum
            for (offset, count) in update.buckets.enumerated() {
                client.table.bucketCounts[slot.offset + offset] = count
            }
        }
        return .success(())
    }

    /// Frees the series of the client that left longest ago, held only for its grace period, to make
    /// room under the daemon's caps for a live client's series: a process that comes and goes under
    /// new names must not fill the caps with series nobody reports any more. False when there is none.
    ///
    /// Scans the clients only while `graceHeld` says some are gone; a count that ran high (a gone
    /// client removed some other way) is corrected by the scan that finds none.
    ///
    /// - Parameter uid: only a client of this uid, to make room under `maxSeriesPerUID`.
    private func evictGraceHeld(_ state: inout State, uid: UInt32? = nil) -> Bool {
        guard state.graceHeld > 0 else { return false }
        // Without this, every declaration refused at a uid's cap scanned all clients while any other
        // uid's client was gone: thousands of scans a frame, under the lock.
        if let uid, state.usageByUID[uid]?.graceHeld ?? 0 <= 0 { return false }
        var oldest: (id: ConnectionID, since: UInt64)?
        for (id, client) in state.clients
        where !client.connected && !client.superseded && (uid == nil || client.peer.uid == uid) {
            if oldest.map({ client.disconnectedAt < $0.since }) ?? true { oldest = (id, client.disconnectedAt) }
        }
        guard let oldest, let client = state.clients.removeValue(forKey: oldest.id) else {
            // Only a scan of every uid proves that no client is held.
            if uid == nil { state.graceHeld = 0 }
            return false
        }
        Self.releaseGraceHeld(client, in: &state)
        removeSeries(of: client, from: &state)
        return true
    }

    /// Counts a gone client out of the grace-held ones, before its series are removed (which forgets
    /// its uid's entry once nothing is left in it).
    private static func releaseGraceHeld(_ client: ClientState, in state: inout State) {
        state.graceHeld = max(0, state.graceHeld - 1)
        state.usageByUID[client.peer.uid]?.graceHeld -= 1
    }

    private func removeSeries(of client: ClientState, from state: inout State) {
        for (family, count) in client.familyCounts { Self.releaseFamily(family, count: count, in: &state) }
        state.seriesTotal -= client.liveCount
        // A connection's own lines free room in the byte budget too.
        if client.liveCount > 0 || client.connectionBytes > 0 { state.seriesFreed &+= 1 }
        state.labelBytes -= client.labelBytes + client.connectionBytes
        state.usageByUID[client.peer.uid, default: UIDUsage()].series -= client.liveCount
        if client.liveCount > 0 { Self.uidFreed(client.peer.uid, in: &state) }
        Self.forgetIfUnused(client.peer.uid, in: &state)
    }

    /// Drops a uid's entry once it has no connection and no series, so uids that come and go leave
    /// nothing behind.
    private static func forgetIfUnused(_ uid: UInt32, in state: inout State) {
        if let usage = state.usageByUID[uid], usage.connections <= 0, usage.series <= 0, usage.graceHeld <= 0 {
            state.usageByUID[uid] = nil
        }
    }
}

// MARK: Snapshots

/// A consistent view of the registry at one moment, taken in O(clients) under the lock.
struct RegistrySnapshot {
    struct FamilyInfo {
        let index: Int
        let name: String
        let type: SeriesType
        let help: String
    }

    struct ClientView {
        let pid: Int32
        let processStartTicks: UInt64?
        let labelText: [UInt8]
        let connected: Bool
        let lastReport: Double
        let table: SeriesTable
    }

    var families: [FamilyInfo]
    /// One more than the highest family index in use: the size of an array indexed by family.
    var familySlots: Int
    var clients: [ClientView]
    var stats: Registry.Stats
    var seriesTotal: Int
    var connectedCount: Int
}

extension Registry {
    /// Takes a snapshot. Series data is shared copy-on-write, so this copies no values.
    func snapshot() -> RegistrySnapshot {
        var snapshot = state.withLock { state in
            var clients: [RegistrySnapshot.ClientView] = []
            clients.reserveCapacity(state.clients.count)
            for id in Array(state.clients.keys) {
                guard state.clients[id]?.hello != nil else { continue }
                state.clients[id]!.table.refreshOrder()
                let client = state.clients[id]!
                clients.append(
                    .init(
                        pid: client.peer.pid, processStartTicks: client.processStartTicks,
                        labelText: client.labelText, connected: client.connected, lastReport: client.lastReport,
                        table: client.table))
            }
            var families: [RegistrySnapshot.FamilyInfo] = []
            for (index, family) in state.families.families.enumerated() {
                guard let family else { continue }
                families.append(.init(index: index, name: family.name, type: family.type, help: family.help))
            }
            return RegistrySnapshot(
                families: families, familySlots: state.families.families.count, clients: clients,
                stats: state.stats, seriesTotal: state.seriesTotal, connectedCount: state.connectedCount)
        }
        // Sorted after the lock is released: ingest need not wait for it.
        snapshot.clients.sort { $0.pid < $1.pid }
        snapshot.families.sort { $0.name < $1.name }
        return snapshot
    }
}
