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
    let state: Mutex<State>
    let limits: RegistryLimits
    private let clock: any DaemonClock
    /// Where refused clients and dropped series are reported, rate-limited; nil logs nothing.
    let log: RefusalLog?
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
}
