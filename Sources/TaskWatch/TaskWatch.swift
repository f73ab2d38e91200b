import TaskWatchWire

/// Makes Swift concurrency task leaks visible in Prometheus.
///
/// Spawn work through a `TaskMonitor` (or `TaskWatch.task`), call `TaskWatch.start()` once, and the
/// reporter thread sends live, created and finished counts, task lifetimes, executor lag and heap
/// figures to `taskwatchd`.
public enum TaskWatch {
    /// Starts the reporter thread with `configuration`; true when it started. Idempotent: once it has,
    /// later calls do nothing and return false. Also false, with nothing started, when the thread cannot
    /// be created (the process is out of memory or threads); a later call tries again. Does nothing
    /// under the `Silent` trait or with `TASKWATCH_DISABLED=1`. Never blocks on the daemon: an absent
    /// daemon is retried in the background. An environment value it ignores (`Configuration`) is said
    /// once on standard error, one line each, starting `TaskWatch:`.
    @discardableResult
    public static func start(_ configuration: Configuration = .init()) -> Bool {
        #if TASKWATCH_SILENT
            return false
        #else
            if configuration.isDisabled || instrumentationDisabled { return false }
            configuration.writeNotices()
            return Reporter.startShared(configuration)
        #endif
    }

    /// The names of the constant labels the running reporter's hello puts on every series of the process
    /// (`Configuration.labels`); empty when it is not running. A series may not carry one itself: the
    /// daemon refuses it (`reserved_label`).
    public static var constantLabelNames: Set<String> {
        #if TASKWATCH_SILENT
            []
        #else
            Reporter.shared.map { Set($0.configuration.labels.keys) } ?? []
        #endif
    }

    /// Whether the reporter is running.
    public static var isRunning: Bool {
        #if TASKWATCH_SILENT
            false
        #else
            Reporter.shared != nil
        #endif
    }

    /// Sends a report now and waits, for at most `timeout`, until it has gone out: for a process about to
    /// exit, so that the daemon's last values are its final counts rather than those of the last
    /// scheduled report, up to one interval older. True when a report collected after this call was
    /// sent in full; false when none was within `timeout`, when it could not be sent (no daemon, or one
    /// that does not read: the call then returns as soon as that is known), or when the reporter is not
    /// running (`start` not called, `TASKWATCH_DISABLED`, the `Silent` trait). Blocks the calling thread.
    /// The report goes out at once when the reporter is quiet, otherwise within 250 ms (a quarter of the
    /// report interval, when that is shorter).
    @discardableResult
    public static func flush(timeout: Duration) -> Bool {
        #if TASKWATCH_SILENT
            return false
        #else
            guard let reporter = Reporter.shared else { return false }
            return reporter.flush(timeout: timeout)
        #endif
    }

    /// Declares series for a `ReportSource`. Returns their ids, or nil when the per-process cap on
    /// series (10,000, of which the last 454 are kept for task monitors and the built-in series) would
    /// be passed or one of them breaks the protocol's limits (names, label counts and lengths, histogram
    /// bounds: see `docs/protocol.md`), in which case none is declared and all are counted in
    /// `seriesDropped`.
    public static func declare(_ descriptors: [SeriesDescriptor]) -> [SeriesID]? {
        SeriesTable.shared.declare(all: descriptors)
    }

    /// Stops reporting a series and frees its place under the cap. The next report tells the daemon,
    /// which stops showing it and frees its place there too (a daemon from before the `retire` frame
    /// keeps showing its last value until the process reconnects). Declaring the same series again
    /// gives back its id, unless another series has it by then. Its source must stop reporting it from
    /// here on; a value collected just before is left out of the report.
    public static func retire(_ id: SeriesID) {
        SeriesTable.shared.retire(id)
    }

    /// Adds a source whose `collect(into:)` runs on every report.
    public static func register(source: any ReportSource) {
        SeriesTable.shared.add(source: source)
    }

    /// Removes a source added with `register(source:)`.
    public static func unregister(source: any ReportSource) {
        SeriesTable.shared.remove(source: source)
    }

    /// Series refused because the per-process cap was reached or the protocol's limits were broken,
    /// and those counted with `countDroppedSeries(_:)`. Reported as `swift_taskwatch_series_dropped_total`.
    public static var seriesDropped: UInt64 { SeriesTable.shared.dropped }

    /// Counts series a `ReportSource` refused itself, without declaring them (the swift-metrics
    /// backend's name conflicts), in `seriesDropped` and so on the daemon's `/metrics`.
    public static func countDroppedSeries(_ count: Int = 1) {
        SeriesTable.shared.countDropped(count)
    }

    /// The most series this process declares.
    public static var seriesLimit: Int { SeriesTable.shared.limit }

    /// The library version sent in the hello frame.
    public static let version = "0.1.0"
}
