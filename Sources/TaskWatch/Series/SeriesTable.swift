import Synchronization
import TaskWatchWire

/// Identifies a series declared with TaskWatch. Ids are allocated by TaskWatch; one is given again only
/// to the same series, declared again after it was retired.
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

/// Every series the process reports, built-in or from a source, with a per-process cap.
///
/// Declarations are append-only so that each connection only needs a cursor to know what it has not
/// declared yet. A retired entry leaves a hole, and the daemon keeps its id for as long as the
/// connection lasts (the protocol has no way to forget one); so when the same series is declared
/// again it gets its old id back, moved to the end so that a connection which never saw it declares it
/// too, where a new id for the same series would be refused by the daemon as a duplicate.
///
/// Every declaration is checked against the wire protocol's limits here, before it is queued: the
/// daemon refuses a declare frame with one over-long string or bad bound list whole, and then every
/// values frame that mentions an id it never learned, which would freeze all of the process's series.
final class SeriesTable: Sendable {
    /// The most live series one process declares; the daemon's per-client default is the same.
    static let defaultLimit = 10_000
    static let shared = SeriesTable(limit: defaultLimit, reserved: BuiltinSeries.count)

    struct State {
        var declarations: [SeriesDeclaration?] = []
        var live = 0
        /// Room kept under the cap for the reserved declarations (the built-ins) not made yet.
        var reservedLeft: Int
        var dropped: UInt64 = 0
        var sources: [any ReportSource] = []
        /// Where each live id sits in `declarations`.
        var positions: [UInt32: Int] = [:]
        /// Retired declarations (their id zeroed) and the id each had.
        var retired: [SeriesDeclaration: UInt32] = [:]
    }

    let limit: Int
    private let state: Mutex<State>

    /// A table of at most `limit` live series, `reserved` of them kept for `declare(all:reserved:)`.
    init(limit: Int, reserved: Int = 0) {
        self.limit = limit
        state = Mutex(State(reservedLeft: reserved))
    }

    /// Declares all of `descriptors` or, when they would pass the cap or one breaks the protocol's
    /// limits, none (each counts as dropped). `reserved` declarations may use the room kept for them.
    func declare(all descriptors: [SeriesDescriptor], reserved: Bool = false) -> [SeriesID]? {
        let declarations = descriptors.map(Self.declaration(of:))
        return state.withLock { state in
            let held = reserved ? 0 : state.reservedLeft
            guard !declarations.contains(nil), state.live + held + descriptors.count <= limit else {
                state.dropped &+= UInt64(descriptors.count)
                return nil
            }
            if reserved { state.reservedLeft = max(0, state.reservedLeft - descriptors.count) }
            return declarations.map { declaration in
                var declaration = declaration!
                declaration.id = state.retired.removeValue(forKey: declaration) ?? UInt32(state.declarations.count + 1)
                state.positions[declaration.id] = state.declarations.count
                state.declarations.append(declaration)
                state.live += 1
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
            state.live -= 1
            declaration.id = 0
            state.retired[declaration] = id.rawValue
        }
    }

    /// Live declarations from position `cursor` on, and the cursor for next time.
    func declarations(from cursor: Int) -> (declarations: [SeriesDeclaration], cursor: Int) {
        state.withLock { state in
            guard cursor < state.declarations.count else { return ([], cursor) }
            return (state.declarations[cursor...].compactMap { $0 }, state.declarations.count)
        }
    }

    var dropped: UInt64 { state.withLock { $0.dropped } }
    var liveCount: Int { state.withLock { $0.live } }

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
