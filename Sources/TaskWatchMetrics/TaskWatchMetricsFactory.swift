import CoreMetrics
import Synchronization
import TaskWatch
import TaskWatchWire

/// A swift-metrics backend whose values travel to `taskwatchd` over the TaskWatch reporter connection.
///
/// Names are sanitized to the Prometheus rules and dimensions become labels. Counters and meters are
/// gauges or counters updated with atomics, so the hot path takes no lock; `make*` and `destroy*`
/// (rare) take one. Handlers for the same name, type and dimensions are shared; once every holder
/// has destroyed one, its series is retired and leaves the daemon's `/metrics`. Past the per-process
/// series cap (10,000 less the room kept for 64 task monitors and the built-in series), `make*` returns
/// a handler that drops everything, counted in `seriesDropped`.
public final class TaskWatchMetricsFactory: MetricsFactory, ReportSource {
    /// Bucket bounds for recorders created with `aggregate: true`.
    public let recorderBounds: [Double]
    /// Bucket bounds, in seconds, for timers.
    public let timerBounds: [Double]

    /// What kind of handler a series has; two kinds may share a wire type (counter and float counter).
    private enum Kind: Hashable {
        case counter, floatingPointCounter, meter, gaugeRecorder, histogramRecorder, timer
    }

    private struct Key: Hashable {
        var kind: Kind
        var name: String
        var labels: [Label]
    }

    private struct Entry {
        var handler: any ReportingHandler
        var references: Int
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var keys: [ObjectIdentifier: Key] = [:]
        var handlers: [any ReportingHandler] = []
        var handlersChanged = false
    }

    private let state = Mutex(State())
    private let dropped = Atomic<UInt64>(0)
    private let declare: @Sendable ([SeriesDescriptor]) -> [SeriesID]?
    private let retire: @Sendable (SeriesID) -> Void

    /// A factory; call `TaskWatch.register(source:)` with it, or use `TaskWatchMetrics.bootstrap()`.
    public convenience init(
        recorderBounds: [Double] = HistogramBounds.prometheusDefault,
        timerBounds: [Double] = HistogramBounds.taskDuration
    ) {
        self.init(
            recorderBounds: recorderBounds, timerBounds: timerBounds, declare: TaskWatch.declare,
            retire: TaskWatch.retire)
    }

    /// A factory declaring its series elsewhere than in the process-wide table, for tests.
    init(
        recorderBounds: [Double] = HistogramBounds.prometheusDefault,
        timerBounds: [Double] = HistogramBounds.taskDuration,
        declare: @escaping @Sendable ([SeriesDescriptor]) -> [SeriesID]?,
        retire: @escaping @Sendable (SeriesID) -> Void
    ) {
        self.recorderBounds = recorderBounds
        self.timerBounds = timerBounds
        self.declare = declare
        self.retire = retire
    }

    /// Series refused because the per-process cap was reached.
    public var seriesDropped: UInt64 { dropped.load(ordering: .relaxed) }

    // MARK: MetricsFactory

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        make(.counter, .counter, label, dimensions, help: "Counter from swift-metrics.") { CounterBox(id: $0) }
            as? any CounterHandler ?? DroppedHandler.shared
    }

    public func makeFloatingPointCounter(
        label: String, dimensions: [(String, String)]
    )
        -> any FloatingPointCounterHandler
    {
        make(.floatingPointCounter, .counter, label, dimensions, help: "Counter from swift-metrics.") {
            FloatingPointCounterBox(id: $0)
        }
            as? any FloatingPointCounterHandler ?? DroppedHandler.shared
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        make(.meter, .gauge, label, dimensions, help: "Meter from swift-metrics.") { GaugeBox(id: $0) }
            as? any MeterHandler ?? DroppedHandler.shared
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let handler: (any ReportingHandler)?
        if aggregate {
            handler = make(
                .histogramRecorder, .histogram, label, dimensions, help: "Recorder from swift-metrics.",
                bounds: recorderBounds
            ) {
                HistogramBox(id: $0, bounds: self.recorderBounds)
            }
        } else {
            handler = make(.gaugeRecorder, .gauge, label, dimensions, help: "Recorder from swift-metrics.") {
                GaugeBox(id: $0)
            }
        }
        return handler as? any RecorderHandler ?? DroppedHandler.shared
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        make(.timer, .histogram, label, dimensions, help: "Timer from swift-metrics, in seconds.", bounds: timerBounds)
        {
            HistogramBox(id: $0, bounds: self.timerBounds)
        } as? any TimerHandler ?? DroppedHandler.shared
    }

    public func destroyCounter(_ handler: any CounterHandler) { destroy(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { destroy(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { destroy(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { destroy(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { destroy(handler) }

    // MARK: ReportSource

    public func collect(into report: inout ReportBuilder) {
        let handlers = state.withLock { $0.handlers }
        for handler in handlers { handler.report(into: &report) }
    }

    // MARK: Internals

    /// The shared handler for this series, declaring it on first use; nil past the series cap.
    /// A name reused with another type or other label names is still declared: the daemon refuses the
    /// conflict and counts it, as the contract says.
    private func make(
        _ kind: Kind,
        _ type: SeriesType,
        _ label: String,
        _ dimensions: [(String, String)],
        help: String,
        bounds: [Double] = [],
        create: (SeriesID) -> any ReportingHandler
    ) -> (any ReportingHandler)? {
        let key = Key(kind: kind, name: Names.sanitizeMetricName(label), labels: Self.labels(dimensions))
        return state.withLock { state -> (any ReportingHandler)? in
            if var entry = state.entries[key] {
                entry.references += 1
                state.entries[key] = entry
                return entry.handler
            }
            let descriptor = SeriesDescriptor(
                name: key.name, help: help, type: type, labels: key.labels, bounds: bounds)
            guard let id = declare([descriptor])?.first else {
                dropped.add(1, ordering: .relaxed)
                return nil
            }
            let handler = create(id)
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
            // Under the lock, as `make` declares: a `make` of the same series right after must come after
            // the retirement, or the daemon would get the new declaration while the old one still holds
            // the name, drop it as a duplicate, then retire the old one, and the series would vanish.
            retire(entry.handler.id)
        }
    }

    /// Dimensions as labels: names sanitized, the first of duplicate names kept, and `process` and
    /// `pid` (the daemon's) renamed with the `exported_` prefix, as Prometheus does on conflicts.
    static func labels(_ dimensions: [(String, String)]) -> [Label] {
        var labels: [Label] = []
        for (name, value) in dimensions {
            var sanitized = Names.sanitizeLabelName(name)
            if sanitized == "process" || sanitized == "pid" { sanitized = "exported_" + sanitized }
            if labels.contains(where: { $0.name == sanitized }) { continue }
            labels.append(Label(sanitized, value))
        }
        return labels
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
