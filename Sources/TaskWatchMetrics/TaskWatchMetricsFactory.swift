import CoreMetrics
import Synchronization
import TaskWatch
import TaskWatchWire

/// A swift-metrics backend whose values travel to `taskwatchd` over the TaskWatch reporter connection.
///
/// Names are sanitized to the Prometheus rules and dimensions become labels, sorted by name (the first
/// of a repeated name kept); `process` and `pid`, which the daemon sets, become `exported_process` and
/// `exported_pid`, as does a dimension named like one of `Configuration.labels` (which the reporter puts
/// on every series; for metrics made after `TaskWatch.start`), and so do `le` and `quantile`, which
/// Prometheus keeps for histogram buckets and summary quantiles (promtool refuses them on any other
/// type, and this backend makes no summaries). A label value
/// longer than the protocol allows (4,096 bytes) is cut at a character boundary.
///
/// Handlers of one Prometheus series are shared: the same name and dimensions, in any order, and a
/// `Counter` with a `FloatingPointCounter` (which report the sum of both), a `Meter` with a plain
/// `Recorder`, a `Timer` with an aggregating `Recorder` (in the bounds of the one made first). Once
/// every holder has destroyed one, its series is retired and leaves the daemon's `/metrics`. Counters
/// and gauges are updated with atomics, so the hot path takes no lock; `make*` and `destroy*` (rare)
/// take one. An update that changes a value wakes a reporter that has backed off while nothing changed
/// (`TaskWatch.reportSourceChanged`), so it reaches the daemon within about one report interval even
/// from a thread that runs no task; a gauge set to the value it holds changes nothing and wakes
/// nothing. Non-finite values and amounts are ignored, negative counter increments too, and a total
/// stops at its largest value (`Int64.max`, the largest finite `Double`) rather than wrap.
///
/// `make*` returns a handler that drops everything, counted in `seriesDropped`, for a series the daemon
/// would refuse: past the per-process series cap (10,000 less the room kept for 64 task monitors and
/// the built-in series), outside the protocol's limits (a metric or dimension name over 256 bytes,
/// more than 32 dimensions), or with a name this factory already uses for another type or other
/// dimension names (a counter `x` also takes `x_total`, a histogram `x` also `x_bucket`, `x_sum` and
/// `x_count`): as in the daemon, the first one made keeps the name while it lives; or with a name of the
/// library's own series (`swift_tasks`, `swift_executor_lag_seconds`, … `ContractSeries`), or one they
/// write besides (`swift_tasks_created`, `swift_executor_lag_seconds_count`), which would take the name
/// from the task series of every process on the host; or with a name the daemon writes itself
/// (`DaemonSeries`: starting with `process_` or `taskwatch_`, or one of the six `swift_process_*`
/// series it reads from `/proc`). The daemon refuses a name another process uses for another type or
/// label set (counted in its `taskwatch_series_dropped_total`): the factory cannot see those.
public final class TaskWatchMetricsFactory: MetricsFactory, ReportSource {
    /// Bucket bounds for recorders created with `aggregate: true`: the ones given, finite, sorted and
    /// without repeats (at most 256), or the Prometheus default when none of them is usable.
    public let recorderBounds: [Double]
    /// Bucket bounds, in seconds, for timers: cleaned as `recorderBounds`, the default
    /// `HistogramBounds.taskDuration`.
    public let timerBounds: [Double]

    /// What a `make*` call makes; two kinds share each wire type, and then one handler.
    private enum Kind {
        case counter, floatingPointCounter, meter, gaugeRecorder, histogramRecorder, timer

        var type: SeriesType {
            switch self {
            case .counter, .floatingPointCounter: .counter
            case .meter, .gaugeRecorder: .gauge
            case .histogramRecorder, .timer: .histogram
            }
        }

        var help: String {
            switch self {
            case .counter, .floatingPointCounter: "Counter from swift-metrics."
            case .meter: "Meter from swift-metrics."
            case .gaugeRecorder, .histogramRecorder: "Recorder from swift-metrics."
            case .timer: "Timer from swift-metrics, in seconds."
            }
        }
    }

    /// One series as the daemon tells them apart: type, name as exposed (a counter's with `_total`,
    /// which the daemon adds when it is missing) and labels in canonical order.
    private struct Key: Hashable {
        var type: SeriesType
        var name: String
        var labels: [Label]

        /// About the memory the key takes, to bound the refused ones kept.
        var bytes: Int { labels.reduce(64 + name.utf8.count) { $0 + 32 + $1.name.utf8.count + $1.value.utf8.count } }
    }

    private struct Entry {
        var handler: any ReportingHandler
        var references: Int
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var keys: [ObjectIdentifier: Key] = [:]
        var handlers: [any ReportingHandler] = []
        var families = Families()
        /// Series refused, with the count of retirements when they last were: made again, one is not
        /// counted again, and not tried again until a retirement may have made room.
        var refused: [Key: UInt64] = [:]
        var refusedBytes = 0
        /// Retirements by this factory (added to the process's, which a test's table may not count).
        var retirements: UInt64 = 0
    }

    /// The most refused series remembered, and their bytes; past either, all are forgotten (and each
    /// may then be counted once more).
    static let maxRefused = 4_096
    static let maxRefusedBytes = 1 << 20

    private let state = Mutex(State())
    private let dropped = Atomic<UInt64>(0)
    private let declare: @Sendable ([SeriesDescriptor]) -> [SeriesID]?
    private let retire: @Sendable (SeriesID) -> Void
    private let retired: @Sendable () -> UInt64
    private let countConflict: @Sendable () -> Void
    private let constantLabelNames: @Sendable () -> Set<String>

    /// A factory; call `TaskWatch.register(source:)` with it, or use `TaskWatchMetrics.bootstrap()`.
    public convenience init(
        recorderBounds: [Double] = HistogramBounds.prometheusDefault,
        timerBounds: [Double] = HistogramBounds.taskDuration
    ) {
        self.init(
            recorderBounds: recorderBounds, timerBounds: timerBounds, declare: TaskWatch.declare,
            retire: TaskWatch.retire, retired: { TaskWatch.seriesRetired },
            countConflict: { TaskWatch.countDroppedSeries() }, constantLabelNames: { TaskWatch.constantLabelNames })
    }

    /// A factory declaring its series elsewhere than in the process-wide table, for tests.
    init(
        recorderBounds: [Double] = HistogramBounds.prometheusDefault,
        timerBounds: [Double] = HistogramBounds.taskDuration,
        declare: @escaping @Sendable ([SeriesDescriptor]) -> [SeriesID]?,
        retire: @escaping @Sendable (SeriesID) -> Void,
        retired: @escaping @Sendable () -> UInt64 = { 0 },
        countConflict: @escaping @Sendable () -> Void = {},
        constantLabelNames: @escaping @Sendable () -> Set<String> = { [] }
    ) {
        self.recorderBounds = Self.usableBounds(recorderBounds, default: HistogramBounds.prometheusDefault)
        self.timerBounds = Self.usableBounds(timerBounds, default: HistogramBounds.taskDuration)
        self.declare = declare
        self.retire = retire
        self.retired = retired
        self.countConflict = countConflict
        self.constantLabelNames = constantLabelNames
    }

    /// Series this factory refused: past the per-process cap, outside the protocol's limits, or in
    /// conflict with another series of this factory (see above). Each counts once, however often it is
    /// made (among the last 4,096 refused). The process's `TaskWatch.seriesDropped`, reported as
    /// `swift_taskwatch_series_dropped_total`, counts them too.
    public var seriesDropped: UInt64 { dropped.load(ordering: .relaxed) }

    // MARK: MetricsFactory

    /// A counter, exposed as `<name>_total`; the handler of a refused series does nothing.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        make(.counter, label, dimensions) { id, _ in CounterBox(id: id) } as? any CounterHandler
            ?? DroppedHandler.shared
    }

    /// A counter of fractional increments, exposed as `<name>_total`.
    public func makeFloatingPointCounter(
        label: String, dimensions: [(String, String)]
    ) -> any FloatingPointCounterHandler {
        make(.floatingPointCounter, label, dimensions) { id, _ in CounterBox(id: id) }
            as? any FloatingPointCounterHandler ?? DroppedHandler.shared
    }

    /// A gauge that can be set, raised and lowered.
    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        make(.meter, label, dimensions) { id, _ in GaugeBox(id: id) } as? any MeterHandler ?? DroppedHandler.shared
    }

    /// A histogram over the recorder buckets when `aggregate` (the default), else a gauge of the last
    /// value recorded.
    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let handler =
            aggregate
            ? make(.histogramRecorder, label, dimensions, bounds: recorderBounds) {
                HistogramBox(id: $0, bounds: $1)
            }
            : make(.gaugeRecorder, label, dimensions) { id, _ in GaugeBox(id: id) }
        return handler as? any RecorderHandler ?? DroppedHandler.shared
    }

    /// A histogram in seconds over the timer buckets.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        make(.timer, label, dimensions, bounds: timerBounds) { HistogramBox(id: $0, bounds: $1) }
            as? any TimerHandler ?? DroppedHandler.shared
    }

    /// Retires the handler's series once every handler made for it is destroyed: the daemon drops it
    /// from `/metrics`, and its name is free again.
    public func destroyCounter(_ handler: any CounterHandler) { destroy(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { destroy(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { destroy(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { destroy(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { destroy(handler) }

    // MARK: ReportSource

    /// Adds every live handler's value to the report being built (the reporter thread calls it).
    public func collect(into report: inout ReportBuilder) {
        let handlers = state.withLock { $0.handlers }
        for handler in handlers { handler.report(into: &report) }
    }

    // MARK: Internals

    /// The shared handler for this series, declaring it on first use; nil when it is refused.
    private func make(
        _ kind: Kind,
        _ label: String,
        _ dimensions: [(String, String)],
        bounds: [Double] = [],
        create: (SeriesID, [Double]) -> any ReportingHandler
    ) -> (any ReportingHandler)? {
        let type = kind.type
        let name = Names.sanitizeMetricName(label)
        let labels = Self.labels(dimensions, for: type, constant: constantLabelNames())
        let key = Key(type: type, name: type.exposedName(name), labels: labels)
        return state.withLock { state -> (any ReportingHandler)? in
            if var entry = state.entries[key] {
                entry.references += 1
                state.entries[key] = entry
                return entry.handler
            }
            // A refused series is made again on every request by code that makes its metrics per
            // request: without this, each call took the table's lock and validated it again, and was
            // counted again. Tried again once some series was retired, which may have made room.
            let retirements = state.retirements &+ retired()
            let refusedAt = state.refused[key]
            if refusedAt == retirements { return nil }
            let descriptor = SeriesDescriptor(
                name: name, help: kind.help, type: type, labels: key.labels, bounds: bounds)
            let admitted =
                !ContractSeries.touches(name: key.name, type: type) && !DaemonSeries.reserves(key.name, type: type)
                && state.families.admits(key.name, type, key.labels)
            guard admitted, let id = declare([descriptor])?.first else {
                if refusedAt == nil {
                    dropped.add(1, ordering: .relaxed)
                    // The process's table counts what `declare` refused; a conflict found here never
                    // reached it, and counts there too so that it shows on `/metrics`.
                    if !admitted { countConflict() }
                    if state.refused.count >= Self.maxRefused || state.refusedBytes >= Self.maxRefusedBytes {
                        state.refused.removeAll(keepingCapacity: true)
                        state.refusedBytes = 0
                    }
                    state.refusedBytes += key.bytes
                }
                state.refused[key] = retirements
                return nil
            }
            if refusedAt != nil {
                state.refused[key] = nil
                state.refusedBytes -= key.bytes
            }
            state.families.add(key.name, type, key.labels)
            let handler = create(id, bounds)
            state.entries[key] = Entry(handler: handler, references: 1)
            state.keys[ObjectIdentifier(handler)] = key
            state.handlers.append(handler)
            return handler
        }
    }

    private func destroy(_ handler: AnyObject) {
        state.withLock { state in
            let identifier = ObjectIdentifier(handler)
            guard let key = state.keys[identifier], var entry = state.entries[key] else { return }
            entry.references -= 1
            if entry.references > 0 {
                state.entries[key] = entry
                return
            }
            state.entries[key] = nil
            state.keys[identifier] = nil
            state.handlers.removeAll { $0 === handler }
            state.families.remove(key.name, key.type)
            state.retirements &+= 1
            // Under the lock, as `make` declares: a `make` of the same series right after must come after
            // the retirement, or the daemon would get the new declaration while the old one still holds
            // the name, drop it as a duplicate, then retire the old one, and the series would vanish.
            retire(entry.handler.id)
        }
    }

    /// Dimensions as labels, canonical so that the same dimensions in another order are the same
    /// series, as the daemon sees them: names sanitized, the first of a repeated name kept, sorted by
    /// name. `process` and `pid` (the daemon's), the `constant` labels the reporter's hello puts on every
    /// series (`Configuration.labels`), `le` (a histogram bucket's) and `quantile` (a summary's) take the
    /// `exported_` prefix, as Prometheus does on conflicts: on every type, since promtool refuses `le`
    /// on anything but a histogram and `quantile` on anything but a summary. Values are cut to the
    /// protocol's limit at a character boundary.
    static func labels(
        _ dimensions: [(String, String)], for type: SeriesType, constant: Set<String> = []
    ) -> [Label] {
        var labels: [Label] = []
        labels.reserveCapacity(dimensions.count)
        for (name, value) in dimensions {
            var sanitized = Names.sanitizeLabelName(name)
            if Self.exportedLabels.contains(sanitized) || constant.contains(sanitized) {
                sanitized = "exported_" + sanitized
            }
            if labels.contains(where: { $0.name == sanitized }) { continue }
            labels.append(Label(sanitized, Wire.prefix(value, utf8Limit: Wire.maxTextLength)))
        }
        labels.sort { $0.name < $1.name }
        return labels
    }

    /// Dimension names that take the `exported_` prefix on every type (see `labels`).
    static let exportedLabels: Set<String> = ["process", "pid", "le", "quantile"]

    /// `bounds` finite, sorted and without repeats, at most `Wire.maxBounds` of them (the lowest); the
    /// fallback when none is left. The daemon refuses any other, and every histogram would be dropped.
    static func usableBounds(_ bounds: [Double], default fallback: [Double]) -> [Double] {
        var usable: [Double] = []
        for bound in bounds.filter(\.isFinite).sorted() where usable.last != bound { usable.append(bound) }
        return usable.isEmpty ? fallback : Array(usable.prefix(Wire.maxBounds))
    }
}

/// The metric names in use by a factory's live series, with the rule the daemon applies to every name
/// on `/metrics`: one type and one set of label names per name, and no name that another family writes
/// too (a histogram's `_bucket`, `_sum` and `_count`, a counter's name without `_total`, which is its
/// family name in OpenMetrics). The daemon refuses a series that breaks it; the factory refuses it
/// first, so that it takes no place under the process's cap and no handler believes it reported.
private struct Families {
    struct Family {
        let type: SeriesType
        let labelNames: [String]
        var series: Int
    }

    private var byName: [String: Family] = [:]
    /// Names a family writes besides its own, and that family's name.
    private var derived: [String: String] = [:]

    func admits(_ name: String, _ type: SeriesType, _ labels: [Label]) -> Bool {
        if let family = byName[name] {
            return family.type == type && family.labelNames.elementsEqual(labels.lazy.map(\.name))
        }
        return derived[name] == nil
            && !type.derivedNames(of: name).contains { byName[$0] != nil || derived[$0] != nil }
    }

    /// Adds a series; `admits` said yes.
    mutating func add(_ name: String, _ type: SeriesType, _ labels: [Label]) {
        if byName[name] != nil {
            byName[name]!.series += 1
            return
        }
        byName[name] = Family(type: type, labelNames: labels.map(\.name), series: 1)
        for other in type.derivedNames(of: name) { derived[other] = name }
    }

    mutating func remove(_ name: String, _ type: SeriesType) {
        guard var family = byName[name] else { return }
        family.series -= 1
        if family.series > 0 {
            byName[name] = family
            return
        }
        byName[name] = nil
        for other in type.derivedNames(of: name) { derived[other] = nil }
    }
}

/// One-line setup for apps using swift-metrics.
public enum TaskWatchMetrics {
    /// Creates a `TaskWatchMetricsFactory`, registers it with the TaskWatch reporter and bootstraps
    /// `MetricsSystem` with it. Call once, before creating metrics; `TaskWatch.start()` sends them.
    @discardableResult
    public static func bootstrap() -> TaskWatchMetricsFactory {
        let factory = TaskWatchMetricsFactory()
        TaskWatch.register(source: factory)
        MetricsSystem.bootstrap(factory)
        return factory
    }
}
