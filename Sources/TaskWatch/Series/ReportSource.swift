import CTaskWatchRuntime
import TaskWatchWire

/// Something that reports extra series through the TaskWatch reporter (the swift-metrics backend is one).
///
/// Declare series with `TaskWatch.declare(_:)`, register the source with `TaskWatch.register(source:)`,
/// and on every report the reporter thread calls `collect(into:)`. Values are absolute: counters report
/// their running total, histograms their per-bucket counts since the start. A counter's total must stay
/// finite, at least 0 and never lower than the one reported before: the daemon refuses a values frame
/// with any other, and with it every value of that report.
public protocol ReportSource: AnyObject, Sendable {
    /// Adds the current value of each of this source's live series. Called on the reporter thread;
    /// keep it quick and never block.
    func collect(into report: inout ReportBuilder)
}

extension TaskWatch {
    /// Tells the reporter that a source's value has just changed; call it after the change, on any
    /// thread. A reporter that has backed off while nothing changed (reports up to a second apart)
    /// comes back to its normal cadence, so the value goes out within about one report interval;
    /// otherwise it does nothing. Spawns and executor jobs wake the reporter by themselves, a source's
    /// update from a thread that runs no task (the main thread, an event loop) does not. Call it only
    /// for a value that differs from before: each call on a backed-off reporter costs a wake-up.
    ///
    /// One relaxed load when the reporter is not backed off. An update made in the microseconds between
    /// a report's collection and the reporter backing off waits for the next scheduled report.
    @inlinable
    public static func reportSourceChanged() {
        #if !TASKWATCH_SILENT
            if tw_reporter_is_backed_off() != 0 { tw_reporter_wake() }
        #endif
    }
}

/// Collects the values of one report.
public struct ReportBuilder {
    var values: [ValueUpdate] = []
    var histograms: [HistogramUpdate] = []

    /// Reports the absolute value of a counter or gauge. NaN is left out of the report (the daemon
    /// keeps the series' previous value): the daemon refuses a frame with a NaN in it whole, which
    /// would hold back every other value of the report with it.
    public mutating func value(_ id: SeriesID, _ value: Double) {
        guard !value.isNaN else { return }
        values.append(ValueUpdate(id: id.rawValue, value: value))
    }

    /// Reports a histogram: per-bucket counts (one more than the declared bounds) and the sum. Left out
    /// when the sum is NaN, for the same reason as a NaN value.
    public mutating func histogram(_ id: SeriesID, buckets: [UInt64], sum: Double) {
        guard !sum.isNaN else { return }
        histograms.append(HistogramUpdate(id: id.rawValue, buckets: buckets, sum: sum))
    }
}
