import Synchronization
import TaskWatchWire

/// Identifies a series declared with TaskWatch; ids are allocated by TaskWatch and never reused.
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
/// declared yet; retired entries stay as holes and their ids are not reused, because the daemon has
/// no way to forget an id within a connection.
final class SeriesTable: Sendable {
    /// The most live series one process declares; the daemon's per-client default is the same.
    static let defaultLimit = 10_000
    static let shared = SeriesTable(limit: defaultLimit)

    struct State {
        var declarations: [SeriesDeclaration?] = []
        var live = 0
        var dropped: UInt64 = 0
        var sources: [any ReportSource] = []
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    /// Declares all of `descriptors` or, when they would pass the cap, none (each counts as dropped).
    func declare(all descriptors: [SeriesDescriptor]) -> [SeriesID]? {
        state.withLock { state in
            guard state.live + descriptors.count <= limit else {
                state.dropped &+= UInt64(descriptors.count)
                return nil
            }
            return descriptors.map { descriptor in
                let id = UInt32(state.declarations.count + 1)
                state.declarations.append(
                    SeriesDeclaration(
                        id: id, type: descriptor.type, name: descriptor.name, help: descriptor.help,
                        labels: descriptor.labels, bounds: descriptor.type == .histogram ? descriptor.bounds : []))
                state.live += 1
                return SeriesID(rawValue: id)
            }
        }
    }

    func retire(_ id: SeriesID) {
        state.withLock { state in
            let index = Int(id.rawValue) - 1
            guard state.declarations.indices.contains(index), state.declarations[index] != nil else { return }
            state.declarations[index] = nil
            state.live -= 1
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
}
