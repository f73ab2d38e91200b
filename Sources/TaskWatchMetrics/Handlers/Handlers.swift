import CoreMetrics
import Synchronization
import TaskWatch

/// A handler that reports through the TaskWatch reporter: its series id and how to report itself.
protocol ReportingHandler: AnyObject, Sendable {
    var id: SeriesID { get }
    func report(into report: inout ReportBuilder)
}

/// Adds `amount` (finite) to a finite `Double` kept as bits in an atomic: a compare-and-swap loop,
/// lock-free. A sum past the largest finite `Double` stops there, as a gauge or counter that reached
/// infinity would stay there (infinity less any finite amount is infinity) and never report again.
func atomicAdd(_ bits: borrowing Atomic<UInt64>, _ amount: Double) {
    var current = bits.load(ordering: .relaxed)
    while true {
        var next = Double(bitPattern: current) + amount
        if !next.isFinite { next = next < 0 ? -.greatestFiniteMagnitude : .greatestFiniteMagnitude }
        let (exchanged, original) = bits.weakCompareExchange(
            expected: current, desired: next.bitPattern, ordering: .relaxed)
        if exchanged { return }
        current = original
    }
}

/// A counter, integer and floating-point: a `Counter` and a `FloatingPointCounter` of one name and
/// dimensions are one Prometheus series, so they share this box, which reports the sum of both parts.
///
/// What it reports is always finite, at least 0 and never lower than before, whatever the caller
/// passes: the daemon refuses a values frame with a negative, infinite or falling counter whole, and
/// with it every other series of the process in that report. So negative and non-finite amounts are
/// ignored, the integer part stops at `Int64.max` and the floating-point part at the largest finite
/// `Double`. `reset()` does not lower what is reported either: a Prometheus counter only goes up while
/// its process lives, and `rate()` reads the increments either way.
final class CounterBox: CounterHandler, FloatingPointCounterHandler, ReportingHandler {
    let id: SeriesID
    /// The integer part. Unsigned, so that adds past `Int64.max` do not wrap (see `increment`); what is
    /// reported stops at `Int64.max`.
    private let integer = Atomic<UInt64>(0)
    private let floatingPointBits = Atomic<UInt64>(0)

    private static let saturated = UInt64(Int64.max)

    init(id: SeriesID) { self.id = id }

    func increment(by amount: Int64) {
        // Counters only go up; swift-metrics documents negative increments as a caller error.
        guard amount > 0 else { return }
        if amount <= Int64(UInt32.max) {
            // The usual case stays one atomic add whose result is not read (checking it cost 0.25 ns an
            // increment, about 11 %). Only these adds take the total past `Int64.max` (the large ones
            // below stop there), and from there wrapping at 2^64 takes 2^31 adds of 4 GiB each: the
            // report clamps what it reads instead.
            integer.wrappingAdd(UInt64(amount), ordering: .relaxed)
            TaskWatch.reportSourceChanged()
            return
        }
        // Amounts that could reach 2^64 from a total near `Int64.max`: a compare-and-swap that stops at
        // `Int64.max` (lock-free all the same).
        var current = integer.load(ordering: .relaxed)
        while current < Self.saturated {
            // Both under 2^63: the sum does not overflow.
            let next = min(current + UInt64(amount), Self.saturated)
            let (exchanged, original) = integer.weakCompareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        TaskWatch.reportSourceChanged()
    }

    func increment(by amount: Double) {
        guard amount > 0, amount.isFinite else { return }
        atomicAdd(floatingPointBits, amount)
        TaskWatch.reportSourceChanged()
    }

    func reset() {}

    func report(into report: inout ReportBuilder) {
        // Each part only goes up and rounding is monotonic, so their sum never goes down; the bound is
        // for the one sum that could overflow: both parts near their top.
        let total =
            Double(min(integer.load(ordering: .relaxed), Self.saturated))
            + Double(bitPattern: floatingPointBits.load(ordering: .relaxed))
        report.value(id, min(total, .greatestFiniteMagnitude))
    }
}

/// A gauge: meters, and recorders that do not aggregate (the last recorded value wins); a `Meter` and
/// such a `Recorder` of one name and dimensions share one. Non-finite values and amounts are ignored,
/// as recorders ignore them: one NaN added would make the gauge NaN for every later increment, which
/// the reporter leaves out, so the gauge would stop reporting for good.
final class GaugeBox: MeterHandler, RecorderHandler, ReportingHandler {
    let id: SeriesID
    private let bits = Atomic<UInt64>(0)

    init(id: SeriesID) { self.id = id }

    func set(_ value: Int64) { set(Double(value)) }
    func set(_ value: Double) {
        guard value.isFinite else { return }
        // A set to the value already held changes nothing and wakes no reporter: a gauge set every few
        // milliseconds to the same value would otherwise keep a backed-off reporter waking as often.
        // Load then store, not an exchange: concurrent sets have no order anyway, and a store is cheaper
        // than a locked exchange.
        guard bits.load(ordering: .relaxed) != value.bitPattern else { return }
        bits.store(value.bitPattern, ordering: .relaxed)
        TaskWatch.reportSourceChanged()
    }
    func increment(by amount: Double) {
        guard amount.isFinite, amount != 0 else { return }
        atomicAdd(bits, amount)
        TaskWatch.reportSourceChanged()
    }
    func decrement(by amount: Double) {
        guard amount.isFinite, amount != 0 else { return }
        atomicAdd(bits, -amount)
        TaskWatch.reportSourceChanged()
    }
    func record(_ value: Int64) { set(Double(value)) }
    func record(_ value: Double) { set(value) }

    func report(into report: inout ReportBuilder) {
        report.value(id, Double(bitPattern: bits.load(ordering: .relaxed)))
    }
}

/// A histogram: aggregating recorders, and timers (in seconds); a `Timer` and an aggregating `Recorder`
/// of one name and dimensions share one, with the bounds of whichever was made first.
final class HistogramBox: RecorderHandler, TimerHandler, ReportingHandler {
    let id: SeriesID
    let histogram: AtomicHistogram

    init(id: SeriesID, bounds: [Double]) {
        self.id = id
        histogram = AtomicHistogram(bounds: bounds)
    }

    func record(_ value: Int64) { record(Double(value)) }
    func record(_ value: Double) {
        guard value.isFinite else { return }  // the histogram ignores it: no change to report
        histogram.record(value)
        TaskWatch.reportSourceChanged()
    }
    func recordNanoseconds(_ duration: Int64) { record(Double(duration) / 1e9) }

    func report(into report: inout ReportBuilder) {
        let snapshot = histogram.snapshot()
        report.histogram(id, buckets: snapshot.buckets, sum: snapshot.sum)
    }
}

/// What a make call returns for a series that was refused (see `TaskWatchMetricsFactory.seriesDropped`):
/// accepts everything, reports nothing.
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
