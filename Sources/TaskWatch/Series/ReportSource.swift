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
