import Synchronization
import TaskWatchWire

/// Identifies a series declared with TaskWatch. Ids are allocated by TaskWatch, never to two live series
/// at once; a retired one is given again to the same series declared again, and, once 2^32 ids have been
/// handed out, to any new series.
public struct SeriesID: Hashable, Sendable {
    /// The id on the wire.
    public let rawValue: UInt32
}

/// A series to declare: what the daemon will expose.
public struct SeriesDescriptor: Sendable, Equatable {
    /// A valid Prometheus metric name.
    public var name: String
    /// The `# HELP` text.
    public var help: String
    /// Counter, gauge or histogram.
    public var type: SeriesType
    /// Labels of this series; never `process` or `pid`, which the daemon adds.
    public var labels: [Label]
    /// Histogram bucket bounds; empty for counters and gauges.
    public var bounds: [Double]

    /// A descriptor; `bounds` only for histograms.
    public init(name: String, help: String, type: SeriesType, labels: [Label] = [], bounds: [Double] = []) {
        self.name = name
        self.help = help
        self.type = type
        self.labels = labels
        self.bounds = bounds
    }
}

/// A change to what the daemon should show, in the order it happened.
enum SeriesChange: Equatable {
    case declare(SeriesDeclaration)
    case retire(UInt32)
}

/// Every series the process reports, built-in or from a source, with a per-process cap.
///
/// A reporter's connection learns the table in two ways: a new connection takes every live
/// declaration (`startOver(for:)`), and from then on each report takes the changes since the previous
/// one (`takeChanges(for:)`), declarations and retirements in the order they happened, so that a series
/// retired and declared again reaches the daemon in that order. Each reporter reads the one log at its
/// own position; what all have read is dropped, and a reporter that falls more than `maxBacklog`
/// changes behind (its daemon stalled while the process kept making series) starts over instead, so
/// the log's memory is bounded whatever the process does. The daemon forgets a retired series,
/// so the same series declared again is new to it, whatever its id; it still gets its old id back
/// (while the table remembers it), so a daemon from before retirement, which keeps every id of a
/// connection, takes it as the identical declaration it already holds.
///
/// Every declaration is checked against the wire protocol's limits here, before it is queued: the
/// daemon refuses a declare frame with one over-long string or bad bound list whole, and then every
/// values frame that mentions an id it never learned, which would freeze all of the process's series.
final class SeriesTable: Sendable {
    /// The most live series one process declares; the daemon's per-client default is the same.
    static let defaultLimit = 10_000
    /// Places each task monitor takes: its 6 series and the `swift_tasks_peak` the daemon adds for its
    /// live gauge (see `Priority.monitor`).
    static let monitorPlaces = 7
    /// Room for 64 task monitors that app metrics cannot take.
    static let monitorHeadroom = 64 * monitorPlaces
    static let shared = SeriesTable(
        limit: defaultLimit, reserved: BuiltinSeries.count, monitorHeadroom: monitorHeadroom)

    /// Who declares, which decides how much of the cap's last room it may use. Why: an app's metrics
    /// with a label per user can fill any cap, and then the task series this library exists for would
    /// be the ones dropped.
    enum Priority {
        /// The built-in series: the room kept for them (`reserved`) is theirs.
        case builtin
        /// Task monitors: all but the built-ins' room. The reporter sends peak samples for their
        /// gauges, and the daemon adds a `<gauge>_peak` series for each, which its per-client cap
        /// counts like a declared one: so each of their gauges takes two places here, or the process
        /// would believe live a series the daemon refused at its cap.
        case monitor
        /// Series of the app (swift-metrics, `TaskWatch.declare`): all but the built-ins' room and
        /// `monitorHeadroom`.
        case app
    }

    struct State {
        /// Live declarations in the order declared; nil where one was retired, until the next rebuild.
        var declarations: [SeriesDeclaration?] = []
        /// Places taken under the cap: one a live declaration, two for a gauge with peaks.
        var live = 0
        /// Live gauges with peaks (`Priority.monitor`): the second place each takes.
        var peaked: Set<UInt32> = []
        var nextID: UInt32 = 1
        /// Room kept under the cap for the reserved declarations (the built-ins) not made yet.
        var reservedLeft: Int
        var dropped: UInt64 = 0
        var sources: [any ReportSource] = []
        /// Where each live id sits in `declarations`.
        var positions: [UInt32: Int] = [:]
        /// Retired declarations (their id zeroed) and the id each had, at most `limit` of them.
        var retired: [SeriesDeclaration: UInt32] = [:]
        /// Changes not yet taken by every reporter; kept only while some reporter is connected, so a
        /// process that never reports keeps none.
        var changes: [SeriesChange] = []
        /// The position of `changes[0]` in the table's whole history of changes.
        var changesStart: UInt64 = 0
        /// Each connected reporter's position: the next change it takes.
        var readers: [ObjectIdentifier: UInt64] = [:]

        mutating func record(_ change: SeriesChange, backlog: Int) {
            guard !readers.isEmpty else { return }
            changes.append(change)
            // Dropped in batches, so each change is moved at most once more on average.
            if changes.count > 2 * backlog { dropChanges(changes.count - backlog) }
        }

        mutating func dropChanges(_ count: Int) {
            changes.removeFirst(count)
            changesStart += UInt64(count)
        }

        /// An id no live series has. The counter wraps after 2^32 declarations (a long-lived server
        /// with a label per request), so it skips the ids still live, the built-ins' among them, and 0,
        /// which `retired` uses as its key's id. At most `limit` ids are live, so the search ends.
        mutating func freshID() -> UInt32 {
            while nextID == 0 || positions[nextID] != nil { nextID &+= 1 }
            defer { nextID &+= 1 }
            return nextID
        }
    }

    let limit: Int
    let monitorHeadroom: Int
    /// Changes kept for a reporter that has not taken them: when more than twice this many pile up,
    /// all but the latest `maxBacklog` are dropped, and a reporter that had not taken those starts over.
    let maxBacklog: Int
    private let state: Mutex<State>
    /// Retirements so far, readable without the lock: what may have made room for a series refused at
    /// the cap (the swift-metrics backend tries one again only once this moved).
    private let retiredCount = Atomic<UInt64>(0)

    /// A table of at most `limit` live series, `reserved` of them kept for the built-ins and
    /// `monitorHeadroom` more for task monitors (see `Priority`).
    init(limit: Int, reserved: Int = 0, monitorHeadroom: Int = 0) {
        self.limit = limit
        self.monitorHeadroom = monitorHeadroom
        maxBacklog = 4 * limit + 1_024
        state = Mutex(State(reservedLeft: reserved))
    }

    /// Declares all of `descriptors` or, when they would pass the cap or one breaks the protocol's
    /// limits, none (each counts as dropped, unless `countingDrops` is false: a retry of series already
    /// counted). How much of the cap's last room they may use depends on `priority`.
    func declare(
        all descriptors: [SeriesDescriptor], priority: Priority = .app, countingDrops: Bool = true
    ) -> [SeriesID]? {
        let declarations = descriptors.map(Self.declaration(of:))
        let peaks = priority == .monitor
        let places = descriptors.count + (peaks ? descriptors.count(where: { $0.type == .gauge }) : 0)
        return state.withLock { state in
            let held =
                switch priority {
                case .builtin: 0
                case .monitor: state.reservedLeft
                case .app: state.reservedLeft + monitorHeadroom
                }
            guard !declarations.contains(nil), state.live + held + places <= limit else {
                if countingDrops { state.dropped &+= UInt64(descriptors.count) }
                return nil
            }
            if priority == .builtin { state.reservedLeft = max(0, state.reservedLeft - descriptors.count) }
            return declarations.map { declaration in
                var declaration = declaration!
                // A remembered id may have gone to another series since the counter wrapped. Given again
                // only when free: the daemon takes an id retired on the connection as new.
                if let id = state.retired.removeValue(forKey: declaration), state.positions[id] == nil {
                    declaration.id = id
                } else {
                    declaration.id = state.freshID()
                }
                state.positions[declaration.id] = state.declarations.count
                state.declarations.append(declaration)
                state.live += 1
                if peaks && declaration.type == .gauge {
                    state.peaked.insert(declaration.id)
                    state.live += 1
                }
                state.record(.declare(declaration), backlog: maxBacklog)
                return SeriesID(rawValue: declaration.id)
            }
        }
    }

    func retire(_ id: SeriesID) {
        state.withLock { state in
            guard let index = state.positions.removeValue(forKey: id.rawValue),
                var declaration = state.declarations[index]
            else { return }
            state.declarations[index] = nil
            state.live -= state.peaked.remove(id.rawValue) == nil ? 1 : 2
            retiredCount.add(1, ordering: .relaxed)
            state.record(.retire(id.rawValue), backlog: maxBacklog)
            // Bounded: a process that keeps making new series (a label per request) must not keep every
            // one it retired. Forgetting them costs only their old ids; all at once, because picking one
            // to forget (`keys.first`) scans ever further through the emptied buckets.
            if state.retired.count >= limit { state.retired.removeAll(keepingCapacity: true) }
            declaration.id = 0
            state.retired[declaration] = id.rawValue
            // Holes are dropped once they outnumber the live declarations, so the list stays within
            // twice what is live (and at least 64).
            if state.declarations.count > max(64, 2 * state.live) {
                state.declarations.removeAll { $0 == nil }
                for (position, declaration) in state.declarations.enumerated() {
                    state.positions[declaration!.id] = position
                }
            }
        }
    }

    /// Every live declaration, in the order declared, for a new connection of `reporter`. Its changes
    /// are kept from here on, for `takeChanges(for:)`.
    func startOver(for reporter: ObjectIdentifier) -> [SeriesDeclaration] {
        state.withLock { state in
            state.readers[reporter] = state.changesStart + UInt64(state.changes.count)
            return state.declarations.compactMap { $0 }
        }
    }

    /// Declarations and retirements since `reporter` started over or last took them, in order; nil
    /// when it fell more than `maxBacklog` behind, or never started over: it must start over.
    func takeChanges(for reporter: ObjectIdentifier) -> [SeriesChange]? {
        state.withLock { state in
            guard let position = state.readers[reporter], position >= state.changesStart else { return nil }
            let taken = Array(state.changes[Int(position - state.changesStart)...])
            state.readers[reporter] = state.changesStart + UInt64(state.changes.count)
            // What every reporter has taken is of no more use.
            // A reader that fell behind has a position before the log and must start over anyway.
            let oldest = max(state.changesStart, state.readers.values.min() ?? state.changesStart)
            state.dropChanges(Int(oldest - state.changesStart))
            return taken
        }
    }

    /// Moves the id counter to `next`, as that many declarations would. For tests of its wrapping.
    func moveNextID(to next: UInt32) {
        state.withLock { $0.nextID = next }
    }

    /// Stops keeping changes for `reporter` (its connection ended).
    func forget(_ reporter: ObjectIdentifier) {
        state.withLock { state in
            state.readers[reporter] = nil
            let end = state.changesStart + UInt64(state.changes.count)
            let oldest = max(state.changesStart, state.readers.values.min() ?? end)
            state.dropChanges(Int(oldest - state.changesStart))
        }
    }

    /// How many declarations the table holds, holes included, how many retired ones it remembers, and
    /// how many changes it keeps for reporters: all bounded however many series come and go.
    var footprint: (declarations: Int, retired: Int, changes: Int) {
        state.withLock { ($0.declarations.count, $0.retired.count, $0.changes.count) }
    }

    /// Every live declaration, in the order declared.
    var liveDeclarations: [SeriesDeclaration] { state.withLock { $0.declarations.compactMap { $0 } } }

    var dropped: UInt64 { state.withLock { $0.dropped } }

    /// Counts series a source refused itself, before declaring them.
    func countDropped(_ count: Int) {
        guard count > 0 else { return }
        state.withLock { $0.dropped &+= UInt64(count) }
    }
    /// Places taken under the cap (see `State.live`).
    var liveCount: Int { state.withLock { $0.live } }
    /// Series retired so far; lock-free.
    var retirements: UInt64 { retiredCount.load(ordering: .relaxed) }

    func add(source: any ReportSource) {
        state.withLock { $0.sources.append(source) }
    }

    func remove(source: any ReportSource) {
        state.withLock { $0.sources.removeAll { $0 === source } }
    }

    func sources() -> [any ReportSource] {
        state.withLock { $0.sources }
    }

    /// `descriptor` as a declaration (id 0), or nil when the daemon would refuse it: a name or label
    /// name that is not a valid Prometheus name or longer than the protocol allows, more labels than it
    /// allows, a label value too long, a label the daemon sets itself, a repeated label, or histogram
    /// bounds that are too many, not finite or not increasing, or all of it too big for one frame.
    /// Over-long help is cut, not refused.
    static func declaration(of descriptor: SeriesDescriptor) -> SeriesDeclaration? {
        guard descriptor.name.utf8.count <= Wire.maxNameLength, Names.isValidMetricName(descriptor.name),
            descriptor.labels.count <= Wire.maxLabels
        else { return nil }
        var names = Set<String>()
        for label in descriptor.labels {
            guard label.name.utf8.count <= Wire.maxNameLength, Names.isValidLabelName(label.name),
                label.value.utf8.count <= Wire.maxTextLength,
                label.name != "process", label.name != "pid",
                label.name != "le" || descriptor.type != .histogram,
                names.insert(label.name).inserted
            else { return nil }
        }
        let bounds = descriptor.type == .histogram ? descriptor.bounds : []
        guard bounds.count <= Wire.maxBounds, bounds.allSatisfy(\.isFinite),
            zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 })
        else { return nil }
        let declaration = SeriesDeclaration(
            id: 0, type: descriptor.type, name: descriptor.name,
            help: Wire.prefix(descriptor.help, utf8Limit: Wire.maxTextLength), labels: descriptor.labels,
            bounds: bounds)
        // Each string within its limit can still add up past one frame (32 labels of 4 KiB).
        guard Wire.headerSize + 2 + FrameEncoder.encodedSize(of: declaration) <= Wire.maxFrameSize else { return nil }
        return declaration
    }
}

extension TaskWatch {
    /// Series retired in this process so far. For the swift-metrics backend, which tries a series
    /// refused at the cap again only once this moved (room may have been freed): lock-free, so a
    /// refused series made on every request costs no lock of the table.
    package static var seriesRetired: UInt64 { SeriesTable.shared.retirements }
}
