import CoreMetrics
import Synchronization
import TaskWatch

/// A handler that reports through the TaskWatch reporter: its series id and how to report itself.
protocol ReportingHandler: AnyObject, Sendable {
    var id: SeriesID { get }
    func report(into report: inout ReportBuilder)
}

/// Adds `amount` to a `Double` kept as bits in an atomic: a compare-and-swap loop, lock-free.
func atomicAdd(_ bits: borrowing Atomic<UInt64>, _ amount: Double) {
    var current = bits.load(ordering: .relaxed)
    while true {
        let next = (Double(bitPattern: current) + amount).bitPattern
        let (exchanged, original) = bits.weakCompareExchange(expected: current, desired: next, ordering: .relaxed)
        if exchanged { return }
        current = original
    }
}

/// A counter. `reset()` does not lower what is reported: a Prometheus counter only goes up while its
/// process lives (the daemon refuses a lower value, and with it the whole report), and `rate()` reads
/// the increments either way. So the reported total keeps counting across resets.
final class CounterBox: CounterHandler, ReportingHandler {
    let id: SeriesID
    private let value = Atomic<Int64>(0)

    init(id: SeriesID) { self.id = id }

    func increment(by amount: Int64) {
        // Counters only go up; swift-metrics documents negative increments as a caller error.
        guard amount > 0 else { return }
        value.wrappingAdd(amount, ordering: .relaxed)
    }

    func reset() {}

    func report(into report: inout ReportBuilder) {
        report.value(id, Double(value.load(ordering: .relaxed)))
    }
}

/// A floating-point counter; `reset()` does not lower what is reported, as for `CounterBox`.
final class FloatingPointCounterBox: FloatingPointCounterHandler, ReportingHandler {
    let id: SeriesID
    private let bits = Atomic<UInt64>(0)

    init(id: SeriesID) { self.id = id }

    func increment(by amount: Double) {
        guard amount > 0, amount.isFinite else { return }
        atomicAdd(bits, amount)
    }

    func reset() {}

    func report(into report: inout ReportBuilder) {
        report.value(id, Double(bitPattern: bits.load(ordering: .relaxed)))
    }
}

/// A gauge: meters, and recorders that do not aggregate (the last recorded value wins).
final class GaugeBox: MeterHandler, RecorderHandler, ReportingHandler {
    let id: SeriesID
    private let bits = Atomic<UInt64>(0)

    init(id: SeriesID) { self.id = id }

    func set(_ value: Int64) { set(Double(value)) }
    func set(_ value: Double) { bits.store(value.bitPattern, ordering: .relaxed) }
    func increment(by amount: Double) { atomicAdd(bits, amount) }
    func decrement(by amount: Double) { atomicAdd(bits, -amount) }
    func record(_ value: Int64) { set(Double(value)) }
    func record(_ value: Double) { set(value) }

    func report(into report: inout ReportBuilder) {
        report.value(id, Double(bitPattern: bits.load(ordering: .relaxed)))
    }
}

/// A histogram: aggregating recorders, and timers (in seconds).
final class HistogramBox: RecorderHandler, TimerHandler, ReportingHandler {
    let id: SeriesID
    let histogram: AtomicHistogram

    init(id: SeriesID, bounds: [Double]) {
        self.id = id
        histogram = AtomicHistogram(bounds: bounds)
    }

    func record(_ value: Int64) { histogram.record(Double(value)) }
    func record(_ value: Double) { histogram.record(value) }
    func recordNanoseconds(_ duration: Int64) { histogram.record(Double(duration) / 1e9) }

    func report(into report: inout ReportBuilder) {
        let snapshot = histogram.snapshot()
        report.histogram(id, buckets: snapshot.buckets, sum: snapshot.sum)
    }
}

/// What a make call returns once the series cap is reached: accepts everything, reports nothing.
final class DroppedHandler: CounterHandler, FloatingPointCounterHandler, MeterHandler, RecorderHandler,
    TimerHandler
{
    static let shared = DroppedHandler()

    func increment(by amount: Int64) {}
    func increment(by amount: Double) {}
    func decrement(by amount: Double) {}
    func reset() {}
    func set(_ value: Int64) {}
    func set(_ value: Double) {}
    func record(_ value: Int64) {}
    func record(_ value: Double) {}
    func recordNanoseconds(_ duration: Int64) {}
}
