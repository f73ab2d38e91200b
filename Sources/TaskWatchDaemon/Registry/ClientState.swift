import TaskWatchWire

/// Everything the registry knows about one connection, from accept until its grace period ends.
struct ClientState {
    let connection: ConnectionID
    let peer: PeerCredentials
    /// The process's start time in clock ticks since boot, to tell a reused pid from the original.
    let processStartTicks: UInt64?
    var hello: Hello?
    /// `process="…",pid="…"` plus the hello's constant labels, rendered and escaped.
    var labelText: [UInt8] = []
    var connected = true
    /// Set when another connection from the same process took over: the next frame closes this one.
    var superseded = false
    /// Set when the daemon refused the hello (`byte_limit`): the connection is closed.
    var refused: ClientRejection?
    /// Set by a goodbye: when the connection closes, its series go at once instead of after the grace.
    var saidGoodbye = false
    var disconnectedAt: UInt64 = 0
    /// Wall-clock seconds of the last accepted report frame.
    var lastReport: Double = 0
    var consecutiveRejections = 0

    var table = SeriesTable()
    /// Series index by the client's id; `droppedID` for ids whose declaration was refused, `retiredID`
    /// for ids the client retired lately, `pendingID` for ids whose declaration waits in `pending`.
    var indexByID = SeriesIndex()
    /// Ids marked `droppedID`, bounded so that marking cannot grow without end.
    var droppedIDs = 0
    /// Ids retired, oldest first, while they may still be marked `retiredID`.
    var retiredIDs: [UInt32] = []
    /// Hashes of name and labels of every live series, to refuse a second series with the same identity.
    var identities: [UInt64: Int32] = [:]
    /// Hash of each series' full declaration, to accept an identical re-declaration of an id.
    var declarationHashes: [UInt64] = []
    /// Series retired by the client: hidden, no longer counted anywhere, and left in `table` until the
    /// next `compact()`.
    var retired: Set<Int32> = []
    /// Bytes charged for the series in `retired`.
    var retiredLabelBytes = 0
    var familyCounts: [Int: Int] = [:]
    /// Bytes charged for the live series, declared and added `_peak` ones, as
    /// `RegistryLimits.maxLabelBytesPerClient` counts them (`Registry.chargedBytes`).
    var labelBytes = 0
    /// Bytes charged overall, from the hello on, for the lines the daemon adds for the connection
    /// (`Registry.connectionLineBytes`).
    var connectionBytes = 0
    /// For gauges that receive peak samples: the derived `_peak` series and its window.
    var peaks: [Int32: PeakState] = [:]
    /// Gauges whose `_peak` name and labels the client declared itself: their peak samples are ignored,
    /// as that series cannot go away while the connection lives, and retrying (and counting a dropped
    /// series) at every peaks entry would only repeat the refusal.
    var declaredPeaks: Set<Int32> = []
    /// Gauges whose `_peak` was refused at a limit, and `Registry.State.seriesFreed` when it last was:
    /// counted once, tried again only after a series went away.
    var refusedPeaks: [Int32: UInt64] = [:]
    /// Declarations refused at a limit that can free up, by id, kept to be admitted once room frees
    /// (`Registry.admitWaiting`). Bounded by `Registry.mayWait`: at most `maxSeriesPerClient` of them and
    /// `maxLabelBytesPerClient` bytes as `PendingDeclaration.cost` counts them, and all connections'
    /// together at most `maxLabelBytes`.
    var pending: [UInt32: PendingDeclaration] = [:]
    /// The ids of `pending` in the order they were refused, from `pendingHead` on, each with the stamp
    /// of its entry (`Registry.State.waitStamps`, one order over all connections): an id retired and
    /// refused again is listed twice, and only the stamp of its current entry counts. Entries of ids no
    /// longer waiting are skipped, and dropped when they pile up.
    var pendingOrder: [(id: UInt32, stamp: UInt64)] = []
    var pendingHead = 0
    /// What `pending` holds, as `PendingDeclaration.cost` counts it.
    var pendingBytes = 0
    /// Where the connection's oldest waiting declaration stands in the daemon's order (`WaitingState`).
    var waiting = WaitingState.idle
    /// Declarations refused as a `conflict` with a family that may go (another connection's, or one of
    /// this connection's own), by id, their ids marked `droppedID`: tried again once a family whose
    /// names they clash with has gone (`Registry.retryConflicted`). Bounded by the dropped ids, and by
    /// `maxLabelBytesPerClient` bytes as `PendingDeclaration.keptCost` counts them.
    var conflicted: [UInt32: KeptDeclaration] = [:]
    /// What `conflicted` holds, as `PendingDeclaration.keptCost` counts it.
    var conflictedBytes = 0

    static let droppedID: Int32 = -1
    static let retiredID: Int32 = -2
    static let pendingID: Int32 = -3

    init(connection: ConnectionID, peer: PeerCredentials, processStartTicks: UInt64?) {
        self.connection = connection
        self.peer = peer
        self.processStartTicks = processStartTicks
    }

    var processName: String { hello?.process ?? "" }

    /// The oldest waiting declaration, passing over entries of ids no longer waiting.
    mutating func waitingHead() -> (id: UInt32, stamp: UInt64)? {
        while pendingHead < pendingOrder.count {
            let entry = pendingOrder[pendingHead]
            if pending[entry.id]?.stamp == entry.stamp { return entry }
            pendingHead += 1
        }
        return nil
    }

    /// Appends `id` to the waiting ones, under `stamp`.
    mutating func enqueuePending(
        _ declaration: SeriesDeclaration, reason: SeriesRejection, cost: Int, hash: UInt64, stamp: UInt64
    ) {
        pending[declaration.id] = PendingDeclaration(
            declaration: declaration, reason: reason, cost: cost, hash: hash, stamp: stamp)
        pendingOrder.append((declaration.id, stamp))
        pendingBytes += cost
        indexByID[declaration.id] = Self.pendingID
        compactPendingOrder()
    }

    /// Takes `id` out of the waiting ones, and returns what it held (0 when it was not waiting). Its
    /// entry in `pendingOrder` stays until passed over; they are rebuilt once stale ones outnumber the
    /// live, so a client that declares and retires at a limit forever leaves no trail.
    mutating func removePending(_ id: UInt32) -> Int {
        guard let waiting = pending.removeValue(forKey: id) else { return 0 }
        pendingBytes -= waiting.cost
        if pending.isEmpty {
            pendingOrder = []
            pendingHead = 0
        } else {
            compactPendingOrder()
        }
        return waiting.cost
    }

    /// Rebuilds `pendingOrder` once it holds more than twice the live entries: the whole array counts,
    /// entries before `pendingHead` too. (Counting only those after it let a client that kept two
    /// declarations waiting, retiring and re-declaring one of them in a loop, grow the array by 16
    /// bytes a cycle for as long as it liked: a review took the daemon from 25 to 146 MB in 50 s.)
    private mutating func compactPendingOrder() {
        guard pendingOrder.count > 2 * pending.count + 64 else { return }
        pendingOrder = pendingOrder[pendingHead...].filter { pending[$0.id]?.stamp == $0.stamp }
        pendingHead = 0
    }

    /// Series held and counted against the limits: those declared (and added) and not retired.
    var liveCount: Int { table.count - retired.count }

    /// Whether enough of the table is retired series to rebuild it: more than half of it, or more label
    /// bytes than the live series hold (and at least 1 MiB), so the cost of a rebuild is paid at most
    /// once per as many retirements as the table holds, and retired labels never take more memory than
    /// the budget allows live ones.
    var needsCompaction: Bool {
        !retired.isEmpty && (retired.count * 2 > table.count || retiredLabelBytes > max(1 << 20, labelBytes))
    }

    /// Removes the retired series from `table` and renumbers every index held elsewhere.
    mutating func compact() {
        let (compacted, newIndex) = table.compacted(dropping: retired)
        table = compacted
        indexByID.remap { newIndex[Int($0)] }
        identities = identities.mapValues { newIndex[Int($0)] }
        let kept = newIndex.indices.filter { newIndex[$0] >= 0 }
        declarationHashes = kept.map { declarationHashes[$0] }
        peaks = Dictionary(
            uniqueKeysWithValues: peaks.map { gauge, peak in
                (newIndex[Int(gauge)], PeakState(derivedIndex: newIndex[Int(peak.derivedIndex)], window: peak.window))
            })
        declaredPeaks = Set(declaredPeaks.map { newIndex[Int($0)] })
        refusedPeaks = Dictionary(uniqueKeysWithValues: refusedPeaks.map { (newIndex[Int($0.key)], $0.value) })
        retired = []
        retiredLabelBytes = 0
    }
}

/// Series index by a client's id: an array for small ids, which the protocol recommends (small
/// consecutive numbers), and a dictionary for the rest. The array is indexed directly on every update,
/// with no hashing, and costs 4 bytes an id instead of a dictionary entry's 16 or more.
struct SeriesIndex {
    private static let absent = Int32.min
    /// The array covers ids below this many times the entries held (or 1,024), so sparse ids can never
    /// make it large.
    private static let densityFactor = 2
    fileprivate var dense: [Int32] = []
    fileprivate var sparse: [UInt32: Int32] = [:]
    private var entries = 0

    subscript(id: UInt32) -> Int32? {
        @inline(__always) get {
            if id < UInt32(truncatingIfNeeded: dense.count) {
                let index = dense[Int(id)]
                if index != Self.absent { return index }
            }
            return sparse.isEmpty ? nil : sparse[id]
        }
        set {
            let old = self[id]
            if old == nil && newValue != nil { entries += 1 }
            if old != nil && newValue == nil { entries -= 1 }
            if !sparse.isEmpty { sparse[id] = nil }
            if id < UInt32(truncatingIfNeeded: dense.count) {
                dense[Int(id)] = newValue ?? Self.absent
                return
            }
            guard let newValue else { return }
            if Int(id) < max(1_024, Self.densityFactor * entries) {
                dense.append(contentsOf: repeatElement(Self.absent, count: Int(id) + 1 - dense.count))
                dense[Int(id)] = newValue
            } else {
                sparse[id] = newValue
            }
        }
    }
}

extension SeriesIndex {
    /// How many ids are marked `marker`: for tests that a connection's counts of markers hold.
    func count(of marker: Int32) -> Int {
        dense.reduce(0) { $0 + ($1 == marker ? 1 : 0) } + sparse.values.reduce(0) { $0 + ($1 == marker ? 1 : 0) }
    }
}

extension SeriesIndex {
    /// Replaces every series index held (the entries that are not markers) with `transform` of it.
    mutating func remap(_ transform: (Int32) -> Int32) {
        for position in dense.indices where dense[position] >= 0 { dense[position] = transform(dense[position]) }
        for (id, index) in sparse where index >= 0 { sparse[id] = transform(index) }
    }
}

/// Where a connection with waiting declarations stands. Only its oldest one is tried (a connection's
/// declarations are admitted in the order they were refused), and only while it could fit: one refused
/// at a limit of its own connection or uid is set aside until a series of that connection or uid goes,
/// so a try of all waiting connections in order never passes over thousands that cannot fit.
enum WaitingState {
    /// Nothing waits.
    case idle
    /// In `Registry.State.waitQueue` under the stamp of its oldest declaration.
    case queued
    /// Refused at `client_limit` or the connection's byte budget: only its own retire makes room.
    case parkedOnOwn
    /// Refused at `uid_limit`: in `Registry.State.parkedByUID` until a series of its uid goes and it is
    /// among the oldest there.
    case parkedOnUID
    /// Parked until its connection retired a series: in `Registry.State.requeue`.
    case requeued
}

/// A declaration kept after a conflict (`ClientState.conflicted`), with the stamp of when it was first
/// refused (`Registry.State.waitStamps`, the one order of waiting declarations): kept ones freed at once
/// are tried in that order, the oldest first.
struct KeptDeclaration {
    let declaration: SeriesDeclaration
    let stamp: UInt64
}

/// A declaration kept after a conflict (`ClientState.conflicted`): its connection and id.
struct ConflictKey: Hashable {
    let connection: ConnectionID
    let id: UInt32
}

/// A declaration refused at a limit that can free up, waiting for room (`Registry.admitWaiting`).
struct PendingDeclaration {
    let declaration: SeriesDeclaration
    /// The limit it last ran into: what its values are counted under while it waits.
    var reason: SeriesRejection
    let cost: Int
    /// `SeriesIdentity.hash(declaration)`, to tell an identical re-declaration of its id.
    let hash: UInt64
    let stamp: UInt64

    /// What a waiting declaration is counted as against the bound on them: what it holds on the heap.
    /// A string of more than 15 UTF-8 bytes is an allocation of a 32-byte header, its bytes and a NUL,
    /// rounded up to 16 (shorter ones live inside the declaration); the labels and bounds are one array each, with a
    /// 32-byte header and 32 bytes a label or 8 a bound; each allocation as glibc rounds it (8 bytes of
    /// its own, to 16, 32 at least); and 256 for the entry itself (the declaration's fields, its slot in
    /// `pending` at the dictionary's load factor, its places in `pendingOrder`). A review measured the
    /// earlier estimate at half what the daemon's resident memory grew by.
    static func cost(of declaration: SeriesDeclaration) -> Int {
        func allocation(_ size: Int) -> Int { max(32, (size + 8 + 15) & ~15) }
        let string = heapBytes(of:)
        var bytes = 256 + string(declaration.name) + string(declaration.help)
        if !declaration.labels.isEmpty { bytes += allocation(32 + 32 * declaration.labels.count) }
        if !declaration.bounds.isEmpty { bytes += allocation(32 + 8 * declaration.bounds.count) }
        for label in declaration.labels { bytes += string(label.name) + string(label.value) }
        return bytes
    }

    /// What a string holds on the heap: nothing up to 15 UTF-8 bytes (kept inline); else an allocation
    /// of a 32-byte header, its bytes and a NUL, rounded up to 16 by Swift, and as glibc rounds it.
    static func heapBytes(of text: String) -> Int {
        guard text.utf8.count > 15 else { return 0 }
        return max(32, (((32 + text.utf8.count + 1 + 15) & ~15) + 8 + 15) & ~15)
    }

    /// What a declaration kept after a conflict is counted as (`Registry.keepConflicted`): what it holds
    /// as a waiting one does, and for each name it is kept under (`Registry.State.conflictWaiters`: its
    /// own and those its family writes besides, five for a histogram) that name's string and 256 bytes
    /// for its entry, table of connections and set of ids. Counted for each kept declaration though
    /// those of one name share them. Without the names, 2,000 kept histograms of long names took 4.8
    /// times what they were counted as (glibc's bytes in use), so the byte limits bounded a fifth.
    static func keptCost(of declaration: SeriesDeclaration, names: [String]) -> Int {
        names.reduce(cost(of: declaration)) { $0 + heapBytes(of: $1) + 256 }
    }
}

/// The derived `<gauge>_peak` series of one gauge.
struct PeakState {
    let derivedIndex: Int32
    var window: PeakWindow
}

/// Hashes of series identity, stable within one daemon run.
enum SeriesIdentity {
    static func hash(name: String, labels: [Label]) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(name)
        for label in labels.sorted(by: { $0.name < $1.name }) {
            hasher.combine(label.name)
            hasher.combine(label.value)
        }
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    static func hash(_ declaration: SeriesDeclaration) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(declaration.name)
        hasher.combine(declaration.type.rawValue)
        hasher.combine(declaration.help)
        for label in declaration.labels {
            hasher.combine(label.name)
            hasher.combine(label.value)
        }
        hasher.combine(declaration.bounds)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }
}
