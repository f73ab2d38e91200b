import Synchronization
import TaskWatchWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Makes Swift concurrency task leaks visible in Prometheus.
///
/// Spawn work through a `TaskMonitor` (or `TaskWatch.task`), call `TaskWatch.start()` once, and the
/// reporter thread sends live, created and finished counts, task lifetimes, executor lag and heap
/// figures to `taskwatchd`.
public enum TaskWatch {
    /// Starts the reporter thread with `configuration`; true when it started. Idempotent: once it has,
    /// later calls do nothing and return false (until `shutdown`). Also false, with nothing started, when
    /// the thread cannot be created (the process is out of memory or threads); a later call tries again.
    /// Does nothing under the `Silent` trait or with `TASKWATCH_DISABLED=1`. Never blocks on the daemon:
    /// an absent daemon is retried in the background. An environment value it ignores (`Configuration`)
    /// is said once on standard error, one line each, starting `TaskWatch:`.
    ///
    /// The first start also installs an `atexit` handler: when the process exits normally (`exit`, or
    /// returning from `main`), it asks the reporter thread for the goodbye `shutdown` sends and waits
    /// for it at most 100 ms, so that the daemon drops the process's series at once instead of keeping
    /// them through its grace period as it does for a crash. It does nothing in a child forked from
    /// the process that started the reporter, once `shutdown` ran, or when the running reporter's
    /// `Configuration.saysGoodbyeAtExit` is false. A process ended by a signal (SIGKILL, or SIGTERM
    /// without a handler) or by `_exit` runs no handler: the daemon sees a crash. Nor is the goodbye
    /// sure when two threads call `exit` at once (glibc lets the second end the process while the
    /// first waits), when another thread holds the reporter's slot at that moment, or when `exit` is
    /// called on the reporter thread itself.
    @discardableResult
    public static func start(_ configuration: Configuration = .init()) -> Bool {
        #if TASKWATCH_SILENT
            return false
        #else
            if configuration.isDisabled || instrumentationDisabled { return false }
            configuration.writeNotices()
            guard Reporter.startShared(configuration) else { return false }
            ExitHook.install()
            return true
        #endif
    }

    /// Says goodbye to the daemon and stops the reporter: the daemon then drops this process's series
    /// at once, as for a process that exited on purpose, rather than showing them with
    /// `taskwatch_client_up 0` through its grace period as for a crash. Call it when the process stops
    /// reporting for good, such as at the end of a graceful shutdown; `start()` installs an exit
    /// handler that does the same at a normal exit. Waits, for at most `timeout`, until the reporter
    /// thread has sent the goodbye and closed the connection (at once when the thread is quiet,
    /// otherwise after its current sample or report: a quarter of the interval, at most 250 ms, plus up
    /// to 20 ms for room in the socket); past it, the thread finishes on its own. True when the
    /// goodbye went out; false when the reporter is not running (`start` not called or failed,
    /// `TASKWATCH_DISABLED`, the `Silent` trait, `shutdown` already called), had no connection (no
    /// daemon), or did not send it within `timeout`. A later `start` starts reporting again, on a new
    /// connection. Counts taken until then are not sent: call `flush(timeout:)` first to send them.
    @discardableResult
    public static func shutdown(timeout: Duration) -> Bool {
        #if TASKWATCH_SILENT
            return false
        #else
            guard let reporter = Reporter.takeShared() else { return false }
            return reporter.shutdown(timeout: timeout)
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
    /// scheduled report, up to one interval older. (After a normal exit the daemon keeps them through
    /// its grace period only with `Configuration.saysGoodbyeAtExit` false; see `start`.) True when a report collected after this call was
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

/// The `atexit` handler `TaskWatch.start` installs (see there).
enum ExitHook {
    /// How long a normal exit waits, at most, for the goodbye.
    static let timeout: Duration = .milliseconds(100)
    /// The process that installed the handler. A child forked from it inherits the handler and the
    /// reporter object, but not the reporter thread: the handler compares this with `getpid()` before
    /// anything else, without a lock (a lock held by another thread at the fork stays held in the child).
    private static let installer = Atomic<Int32>(0)

    static func install() {
        let pid = getpid()
        guard installer.exchange(pid, ordering: .relaxed) != pid else { return }
        atexit { ExitHook.run() }
    }

    private static func run() {
        guard installer.load(ordering: .relaxed) == getpid(), let reporter = Reporter.takeSharedForExit() else {
            return
        }
        // An exit from the reporter thread itself (inside a report source) cannot wait for that thread.
        guard !reporter.isCurrentThread else { return }
        _ = reporter.shutdown(timeout: timeout)
    }
}
