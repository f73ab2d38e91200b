import CTaskWatchRuntime
import Synchronization
import TaskWatchWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Samples every monitor and source and sends reports to the daemon from one dedicated thread.
///
/// Why a thread and not a Task: the reporter must keep its cadence, and measure executor lag, exactly
/// when the cooperative pool is starved or blocked, which is when a Task-based reporter would stall
/// with it. It must also never add work to the executor it observes, apart from the probe job.
///
/// Why the reporter goes quiet: on the virtual machines this runs on, every timed wake-up of a thread
/// costs 30–40 µs of CPU, so a thread that merely wakes every 10 ms already spends 0.4 % of a core.
/// An idle process must therefore mostly not wake its reporter at all. Two levels:
/// - *Sub-sampling* of live counts (for peaks) runs only in a report window that follows a window in
///   which some monitor changed; in a quiet window the report's own reading is the only sample.
/// - *Back-off*: when a whole report carries no changed value (only the executor-lag probe, heap
///   statistics and the probe's own enqueues moved), the next report period doubles, up to
///   `idleCeiling`, and the probe follows the report period. Values are absolute, so a slower report
///   loses nothing; it only repeats what the daemon already holds.
/// Whenever it is not sub-sampling, the reporter sleeps on a futex (`tw_reporter_idle_wait`) instead of
/// a plain timer, with `tw_reporter_idle_flag` set. The spawn path (`TaskCounts.created`) and the
/// global-enqueue hook check that flag with one relaxed load and, only when it is set, clear it and wake
/// the reporter, which returns at once to the normal cadence and sub-sampling: the first report after
/// a quiet spell goes out within one normal interval of the first spawn. Once the reporter has backed
/// off (and is connected), the first changed value of a report source (a swift-metrics update from a
/// thread that runs no task) wakes it too, for one report an interval later, without sub-sampling;
/// unchanged values do not, so a gauge set to the same value every few milliseconds costs no wake-ups,
/// and a woken report that finds nothing changed (the value went back) leaves no value wake-up until
/// the next scheduled report.
///
/// Its cost is bounded in a busy process too: the work grows with the number of monitors (every sample
/// and report reads each one's counters), so a report may take at most a twentieth of the report
/// period in CPU and a sample a fiftieth of the sample period; past that the periods stretch
/// (`reportDutyDivisor`, `sampleDutyDivisor`). 1,400 monitors all spawning took 31 % of a core before,
/// 8 % after (`ClientMeasure busy-monitors 1400 4`).
///
/// A report that cannot go out (no daemon, or one that does not read) is not activity: an idle process
/// keeps backing off to one report a second while its daemon is gone, so after a daemon restart it
/// reappears within about two of those periods (1.2–1.9 s measured by a review), a busy one within an
/// interval or two.
final class Reporter: @unchecked Sendable {
    // @unchecked: the `var`s below belong to the reporter thread alone (written before it starts or
    // after it is joined otherwise); everything shared with other threads is atomic or immutable.

    private static let sharedReporter = Mutex<Reporter?>(nil)

    /// The reporter started by `TaskWatch.start`, if any.
    static var shared: Reporter? { sharedReporter.withLock { $0 } }

    static func startShared(_ configuration: Configuration) -> Bool {
        start(into: sharedReporter) { Reporter(configuration: configuration) }
    }

    /// Takes the reporter started by `TaskWatch.start` out of its slot, so that a later `start` starts a
    /// new one.
    static func takeShared() -> Reporter? {
        sharedReporter.withLock { current in
            defer { current = nil }
            return current
        }
    }

    /// As `takeShared`, for the exit handler: only a reporter that says goodbye at exit, and nil at once
    /// when the slot's lock is held, even by this thread. An `exit` from a signal handler that
    /// interrupted this thread inside the lock would otherwise take it again, which traps (a review
    /// crashed a process so).
    static func takeSharedForExit() -> Reporter? {
        let taken = sharedReporter.withLockIfAvailable { current -> Reporter? in
            guard let reporter = current, reporter.configuration.saysGoodbyeAtExit else { return nil }
            current = nil
            return reporter
        }
        return taken ?? nil
    }

    /// Whether the calling thread is this reporter's own (an `exit` from inside a report source).
    var isCurrentThread: Bool {
        runningThread.load(ordering: .relaxed) == UInt(bitPattern: Int(bitPattern: pthread_self()))
    }

    /// Starts the reporter `make` returns and keeps it in `slot`, unless `slot` holds one already. False
    /// when it does, or when the thread could not be created: then `slot` stays empty, so that a later
    /// call tries again.
    static func start(into slot: borrowing Mutex<Reporter?>, _ make: () -> Reporter) -> Bool {
        slot.withLock { current in
            guard current == nil else { return false }
            let reporter = make()
            guard reporter.start() else { return false }
            current = reporter
            return true
        }
    }

    let configuration: Configuration
    let probe = ExecutorProbe()
    private let builtin = BuiltinSeries.shared
    private let table = SeriesTable.shared
    private let interval: UInt64
    private let samplePeriod: UInt64
    private let probePeriod: UInt64
    private let stackSize: Int

    /// Reports that could not be sent: no daemon, a full socket buffer, or a broken connection.
    let reportsDropped = Atomic<UInt64>(0)
    /// Reports sent in full.
    let reportsSent = Atomic<UInt64>(0)
    /// Successful connections, the first included.
    let connections = Atomic<UInt64>(0)
    /// Connections dropped because their descriptor came to name something else (`Connection.SendResult.lost`).
    let descriptorsLost = Atomic<UInt64>(0)
    private let stopRequested = Atomic<Bool>(false)
    /// Set by the thread when it has said goodbye (or had no one to say it to) and is about to end.
    private let threadFinished = Atomic<Bool>(false)
    /// `pthread_self()` of the reporter thread while it runs; 0 before.
    private let runningThread = Atomic<UInt>(0)
    /// Whether the goodbye went out.
    private let goodbyeSent = Atomic<Bool>(false)
    /// Set when `shutdown` gave up waiting and detached the thread, which then still owns the connection.
    private var detached = false
    /// Set by `flush`: report at once.
    private let flushRequested = Atomic<Bool>(false)
    /// Reports begun (numbered from 1), the last one done (sent or not) and the last one sent in full:
    /// `flush` waits for one begun after it was called.
    private let reportsBegun = Atomic<UInt64>(0)
    private let lastReportDone = Atomic<UInt64>(0)
    private let lastReportSent = Atomic<UInt64>(0)
    private var thread: pthread_t?

    // Reporter-thread state.
    private var connection: Connection?
    /// Hello, declare and retire frames not sent yet, in order: unlike values, the next report would
    /// not repeat them.
    private var pendingControl: [[UInt8]] = []
    /// How long this report may still wait for room in the socket, in nanoseconds (`deliver`).
    private var roomWaitLeft: UInt64 = 0
    /// Whether a frame of this report went out: only then does `deliver` wait for room.
    private var reportUnderway = false
    /// What each report may wait in all for room in the socket.
    static let roomWait: UInt64 = 20_000_000
    /// Times a report waited for room in the socket. For tests.
    private(set) var roomWaits = 0
    /// Whether hello, declare or retire frames wait to be sent. For tests.
    var hasPendingControl: Bool { !pendingControl.isEmpty }
    private var backoff: UInt64 = Reporter.minimumBackoff
    private var nextConnect: UInt64 = 0
    /// Reports sent in full on the current connection, counted up to `stableReports`.
    private var reportsOnConnection = 0
    private var monitors: [MonitorRegistry.Entry] = []
    /// `MonitorRegistry.generation` when `monitors` was taken.
    private var monitorsGeneration: UInt64 = 0
    /// Each monitor's highest live count since the last report that was sent.
    private var peaks: [UInt64] = []
    /// Each monitor's live count when the current report collected it.
    private var collectedLive: [UInt64] = []
    private var heap = HeapProbe()
    /// Whether live counts are sampled between reports in the current window.
    private var subsampling = true
    /// Consecutive reports that carried no changed value.
    private var quietReports = 0
    /// Whether a changed value of a report source may wake the reporter once it has backed off. Spent by
    /// such a wake whose report found nothing changed, until the next scheduled report.
    private var valueWakeArmed = true
    /// Whether the report due next was brought forward by a changed value of a report source.
    private var valueWoken = false
    /// The previous report, to tell whether anything changed.
    private var previousValues: [ValueUpdate] = []
    private var previousHistograms: [HistogramUpdate] = []
    private var previousCreated: [UInt64] = []
    private var previousFinished: [UInt64] = []
    /// The shortest report period the last report's CPU cost allows (`reportDutyDivisor`).
    private var reportFloor: UInt64 = 0
    /// Global enqueues expected from nobody but this reporter: the count at the last report plus the
    /// probes scheduled since.
    private var expectedEnqueued: UInt64 = 0

    static let minimumBackoff: UInt64 = 10_000_000
    static let maximumBackoff: UInt64 = 1_000_000_000
    /// Reports a connection must carry before its loss counts as a daemon restart (reconnect at once)
    /// rather than a refusal (reconnect after the backoff). A daemon that refuses a client (not allowed,
    /// too many clients, bad frames) accepts the connection, reads the hello and closes it: the next
    /// send fails. Without this, every refused client would reconnect every report interval.
    static let stableReports = 3
    /// The longest report period of a process in which nothing changes.
    static let idleCeiling: UInt64 = 1_000_000_000

    /// A sample may take at most this fraction of the time to the next (1/50: 2 % of a core). A sample
    /// reads every monitor's counters, 16 cache lines each that the spawning threads keep writing: with
    /// 1,400 monitors all spawning, the reporter took 31 % of a core, 16 % with the report bound alone
    /// (`ClientMeasure busy-monitors 1400 4`). Past the bound the samples thin out; the reports' own
    /// readings remain.
    static let sampleDutyDivisor: UInt64 = 50

    /// A report may take at most this fraction of the report period (1/20: 5 % of a core); past it the
    /// period stretches. A report reads every counter of every monitor (64 cache lines each) and every
    /// source: with 1,400 monitors all spawning, reports every 10 ms took about a quarter of a core.
    static let reportDutyDivisor: UInt64 = 20

    /// The reporter thread's name, as /proc/PID/task/TID/comm shows it (at most 15 bytes).
    static let threadName = "taskwatch"

    /// Called after the first attempt of each report to send the queued control frames. For tests,
    /// which make room in the socket there.
    var afterControlFlush: (() -> Void)?

    /// A reporter whose thread, once started, has a stack of `stackSize` bytes.
    init(configuration: Configuration, stackSize: Int = 256 * 1024) {
        self.configuration = configuration
        self.stackSize = stackSize
        interval = max(configuration.interval.nanoseconds, 100_000)
        probePeriod = max(configuration.probeInterval.nanoseconds, 1_000_000)
        // Live counts are sampled four times per report, at least every 250 µs apart: a burst that
        // rises and falls within a report still shows its peak within a quarter interval of rise. And at
        // most 250 ms apart, so that the thread, which sleeps through a sample period uninterrupted, sees
        // a `flush` within 250 ms however long the interval.
        samplePeriod = min(max(interval / 4, 250_000), 250_000_000)
    }

    /// Installs the enqueue hook and starts the thread; false when the thread could not be created (no
    /// memory, or the process's thread limit reached).
    @discardableResult
    func start() -> Bool {
        tw_enqueue_hook_install()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, stackSize)
        var handle = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        // The thread inherits a mask blocking every signal the app may handle: a process-directed signal
        // goes to any thread not blocking it, and an app that blocks SIGUSR1 or SIGTERM in its threads
        // to take them with `sigwait` or a signalfd would otherwise see this thread take them, and die of
        // the default action. Faults stay unblocked, so a crash here still reaches crash handlers.
        var blocked = sigset_t()
        var previous = sigset_t()
        sigfillset(&blocked)
        for fault in [SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS] { sigdelset(&blocked, fault) }
        pthread_sigmask(SIG_SETMASK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let result = pthread_create(
            &handle, &attributes,
            { context in
                guard let context else { return nil }
                // Named so that `top -H`, `perf` and /proc/PID/task show what this thread is.
                _ = tw_name_current_thread(Reporter.threadName)
                let reporter = Unmanaged<Reporter>.fromOpaque(context).takeRetainedValue()
                reporter.run()
                return nil
            }, context)
        pthread_attr_destroy(&attributes)
        guard result == 0 else {
            Unmanaged<Reporter>.fromOpaque(context).release()
            return false
        }
        thread = handle
        return true
    }

    /// Stops the thread, which says goodbye to the daemon and closes the connection, and waits for it.
    /// For tests.
    func stop() {
        requestStop()
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        } else if !detached {
            // Without a thread: a test may have driven `report(now:)` itself.
            sayGoodbye()
        }
    }

    /// Asks the thread to say goodbye and end, and waits up to `timeout` for it (`TaskWatch.shutdown`);
    /// true when the goodbye went out. The thread sees the request at once when it is quiet, otherwise
    /// after its current sample period (a quarter of the interval, at most 250 ms) or report (at most
    /// `roomWait` more). Past `timeout` the thread is left to finish on its own, detached.
    func shutdown(timeout: Duration) -> Bool {
        requestStop()
        guard let thread else { return false }
        let deadline = MonotonicClock.now() &+ timeout.nanoseconds
        while !threadFinished.load(ordering: .acquiring) {
            guard MonotonicClock.now() < deadline else {
                pthread_detach(thread)
                self.thread = nil
                detached = true
                return false
            }
            usleep(200)
        }
        pthread_join(thread, nil)
        self.thread = nil
        return goodbyeSent.load(ordering: .acquiring)
    }

    private func requestStop() {
        // Sequentially consistent, paired with the quiet reporter's flag store then load of this: either
        // the reporter sees the request before it sleeps, or this wake finds its flag set.
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wakeForRequest()
    }

    /// Wakes the thread for a stop or flush request, quiet or sub-sampling: a quiet one through the idle
    /// flag (clearing it), a sub-sampling one through the sequence its sleep waits on.
    private func wakeForRequest() {
        if tw_reporter_is_idle() != 0 { tw_reporter_wake() } else { tw_reporter_interrupt() }
    }

    /// Sends the goodbye, so that the daemon drops this process's series at once when the connection
    /// closes instead of keeping them through its grace period as for a crash, and closes the
    /// connection. Waits for room in the socket as a report under way does (at most `roomWait`).
    private func sayGoodbye() {
        if connection != nil {
            roomWaitLeft = Self.roomWait
            reportUnderway = true
            if deliver(FrameEncoder.goodbye()) { goodbyeSent.store(true, ordering: .releasing) }
        }
        connection = nil
        table.forget(ObjectIdentifier(self))
    }

    /// Asks for a report at once and waits, up to `timeout`, until one collected after this call has been
    /// tried; true when it was sent in full. The reporter sees the request at once when it is quiet, and
    /// otherwise at its next sample, within 250 ms.
    func flush(timeout: Duration) -> Bool {
        let target = reportsBegun.load(ordering: .sequentiallyConsistent) + 1
        // Sequentially consistent, paired with the quiet reporter's flag store then load of this, as for
        // `stop`: either it sees the request before it sleeps, or this wake finds its flag set.
        flushRequested.store(true, ordering: .sequentiallyConsistent)
        wakeForRequest()
        let deadline = MonotonicClock.now() + timeout.nanoseconds
        while lastReportDone.load(ordering: .acquiring) < target {
            if stopRequested.load(ordering: .relaxed) || MonotonicClock.now() >= deadline { return false }
            usleep(1_000)
        }
        return lastReportSent.load(ordering: .acquiring) >= target
    }

    private func run() {
        runningThread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
        var now = MonotonicClock.now()
        var nextSample = now
        var nextProbe = now
        var nextReport = now + interval
        var reportPeriod = interval
        refreshMonitors()
        heap.refresh(now: now)
        expectedEnqueued = tw_enqueue_count()
        while !stopRequested.load(ordering: .acquiring) {
            now = MonotonicClock.now()
            if flushRequested.load(ordering: .relaxed), flushRequested.exchange(false, ordering: .acquiring) {
                nextReport = now
            }
            if subsampling, now >= nextSample {
                sampleLive()
                // Wall time, not the thread's CPU time as for reports: that clock is a system call
                // (0.8 µs here), too dear at 400 samples a second. A sample that looks dear because the
                // thread was preempted only delays the next one.
                let cost = MonotonicClock.now() &- now
                nextSample = Self.advance(nextSample, by: max(samplePeriod, cost &* Self.sampleDutyDivisor), now: now)
            }
            if now >= nextProbe {
                if probe.schedule() { expectedEnqueued &+= 1 }
                nextProbe = Self.advance(nextProbe, by: max(probePeriod, reportPeriod), now: now)
            }
            if now >= nextReport {
                heap.refresh(now: now)
                // After the heap statistics: `mallinfo2` can take milliseconds, at most once a second,
                // and would stretch the period after every one of them.
                let cpu = MonotonicClock.threadCPU()
                let activity = report(now: now)
                reportFloor = (MonotonicClock.threadCPU() &- cpu) &* Self.reportDutyDivisor
                subsampling = activity.monitors
                quietReports = activity.any ? 0 : quietReports + 1
                // A report a changed value brought forward that found nothing changed (a gauge back at its
                // value, as an in-flight count between requests) spends the value wake-up until the next
                // scheduled report: else every such update woke the reporter within the report interval,
                // and it never backed off (~440 wake-ups a second for a count raised and lowered every
                // millisecond, where the same process without the wake-up had 9).
                valueWakeArmed = activity.any || !valueWoken
                valueWoken = false
                reportPeriod = max(period(afterQuietReports: quietReports), reportFloor)
                nextReport = Self.advance(nextReport, by: reportPeriod, now: now)
                // Backed off past the probe period, the probe rides on the report's wake-up.
                if reportPeriod > probePeriod { nextProbe = nextReport }
                if subsampling { nextSample = min(nextSample, now + samplePeriod) }
            }
            guard !subsampling else {
                // On the futex, not a timer: a stop or flush (the exit handler's goodbye) must not wait out
                // a sample period of up to 250 ms. The sequence is read before the requests are checked,
                // so a request made after the check has moved it and the wait returns at once.
                let sequence = tw_reporter_sequence()
                if stopRequested.load(ordering: .acquiring) || flushRequested.load(ordering: .acquiring) { continue }
                _ = tw_reporter_idle_wait(sequence, min(nextSample, nextProbe, nextReport))
                continue
            }
            // Backed off and connected, a changed swift-metrics value wakes it too (`TW_REPORTER_BACKED_OFF`),
            // unless a wake-up of that kind was spent since the last scheduled report; at its normal
            // cadence the next report is at most an interval away anyway, and a report that cannot go out
            // is not worth a wake-up.
            let backedOff = valueWakeArmed && quietReports > 0 && connection != nil
            guard waitQuietly(until: min(nextProbe, nextReport), backedOff: backedOff) else { continue }
            now = MonotonicClock.now()
            if !flushRequested.load(ordering: .relaxed), tw_enqueue_count() == expectedEnqueued,
                MonitorRegistry.shared.generation == monitorsGeneration, !monitorsCreatedSinceReport()
            {
                // Woken by a changed value alone (a spawn or job after this check wakes the wait below; a
                // new monitor's first spawn moves the generation, as its counters are not in `monitors`):
                // a report one interval from now, so that a burst of updates goes in one, and no more.
                // Not the normal cadence: live counts did not move, so there is nothing to sub-sample (four
                // wake-ups a report), and whether the process is active is the report's to tell.
                valueWakeArmed = false
                valueWoken = true
                nextReport = min(nextReport, now + max(interval, reportFloor))
                continue
            }
            // Woken by a spawn, an enqueued job or a flush: the normal cadence, at once.
            subsampling = true
            quietReports = 0
            reportPeriod = max(interval, reportFloor)
            nextSample = now
            nextReport = min(nextReport, now + reportPeriod)
            nextProbe = min(nextProbe, now + probePeriod)
        }
        sayGoodbye()
        threadFinished.store(true, ordering: .releasing)
    }

    /// The report period after `quiet` consecutive reports without a change: doubling, up to
    /// `idleCeiling` (or the configured interval, when that is longer).
    private func period(afterQuietReports quiet: Int) -> UInt64 {
        let ceiling = max(Self.idleCeiling, interval)
        guard quiet > 0 else { return interval }
        let shift = min(quiet, 40)
        return interval > ceiling >> shift ? ceiling : interval << shift
    }

    /// Sleeps until `deadline` unless woken; true when woken, or when there is work already.
    private func waitQuietly(until deadline: UInt64, backedOff: Bool) -> Bool {
        let sequence = tw_reporter_idle_begin(backedOff ? TW_REPORTER_BACKED_OFF : 1)
        // Re-checked after the flag is set: a spawn or a stop that came just before it would not have
        // seen it and woken us.
        if stopRequested.load(ordering: .sequentiallyConsistent) { return false }
        if flushRequested.load(ordering: .sequentiallyConsistent) { return true }
        if tw_enqueue_count() != expectedEnqueued || monitorsCreatedSinceReport() { return true }
        return tw_reporter_idle_wait(sequence, deadline) != 0
    }

    /// Whether any monitor counted a creation since the last report.
    private func monitorsCreatedSinceReport() -> Bool {
        for index in monitors.indices where index < previousCreated.count {
            if monitors[index].counters.sum(slot: TaskMonitor.Slot.created) != previousCreated[index] { return true }
        }
        return false
    }

    /// The next deadline after `deadline`; deadlines missed entirely are skipped, not caught up.
    private static func advance(_ deadline: UInt64, by period: UInt64, now: UInt64) -> UInt64 {
        let next = deadline + period
        return next > now ? next : now + period
    }

    private func refreshMonitors() {
        // Read before the entries: a monitor made in between is in them, and taken again next time.
        monitorsGeneration = MonitorRegistry.shared.generation
        monitors = MonitorRegistry.shared.entries()
        if peaks.count < monitors.count { peaks += Array(repeating: 0, count: monitors.count - peaks.count) }
        if collectedLive.count < monitors.count {
            collectedLive += Array(repeating: 0, count: monitors.count - collectedLive.count)
        }
    }

    private func sampleLive() {
        // A monitor made since the last report (a `static let` is made at its first spawn, which is
        // also what wakes a quiet reporter) is sampled from its first burst on: sampling the list of
        // the last report, its first burst was missed from `swift_tasks_peak` unless it lasted until
        // the next report. One atomic load a sample; the list is taken again only when it moved.
        if MonitorRegistry.shared.generation != monitorsGeneration { refreshMonitors() }
        for index in monitors.indices {
            peaks[index] = max(peaks[index], TaskMonitor.live(of: monitors[index].counters))
        }
    }

    /// What changed since the previous report.
    struct Activity {
        /// Some monitor counted a creation or an ending.
        var monitors = false
        /// Some value other than the executor probe's and the heap's, or the report was not sent.
        var any = false
    }

    /// Collects and sends one report. Only the reporter thread calls it, or a test whose reporter has no
    /// thread.
    ///
    /// Every id in the values, histograms and peaks sent is declared, and not retired, on the current
    /// connection; the daemon refuses a whole frame for one id it does not know. Hence the order: connect
    /// (which starts over from the live declarations) before collecting, so that no source still reports
    /// a series retired before that; take the changes after collecting, so that a series declared since
    /// is declared first; send values only in a report whose changes were taken; leave out the series
    /// those changes retire.
    @discardableResult
    func report(now: UInt64) -> Activity {
        // Numbered before anything is collected, so a report numbered after a `flush` call carries every
        // count from before it.
        let number = reportsBegun.add(1, ordering: .sequentiallyConsistent).newValue
        defer { lastReportDone.store(number, ordering: .releasing) }
        roomWaitLeft = Self.roomWait
        reportUnderway = false
        refreshMonitors()
        let isConnected = connected(now: now)
        var builder = ReportBuilder()
        var peakSamples: [PeakSample] = []
        var activity = Activity()
        activity.monitors = collectMonitors(into: &builder, peaks: &peakSamples)
        let enqueued = tw_enqueue_count()
        collectBuiltins(into: &builder, enqueued: enqueued)
        for source in table.sources() { source.collect(into: &builder) }
        // Jobs beyond this reporter's own probes mean the executor is in use.
        activity.any = activity.monitors || enqueued != expectedEnqueued || changed(builder)
        expectedEnqueued = enqueued
        previousValues = builder.values
        previousHistograms = builder.histograms

        // A report that cannot go out (no daemon, or one that does not read) is not activity: an idle
        // process backs off to one report a second as it would connected, instead of waking every
        // interval for a daemon that is not there (0.63 % of a core at 10 ms, `ClientMeasure idle-cpu`
        // with TASKWATCH_SOCKET at no socket). Values are absolute, so the next report carries all of it.
        guard isConnected else {
            reportsDropped.add(1, ordering: .relaxed)
            return activity
        }
        // Changes are taken only once the frames queued before are sent: while the daemon does not read,
        // they wait in the table, whose backlog is bounded, rather than here. Without them this report's
        // values may name series declared since, so it is dropped, even if the socket has room again
        // by the time the values would go.
        let flushed = flushControl()
        afterControlFlush?()
        guard flushed, let changes = table.takeChanges(for: ObjectIdentifier(self)) else {
            // Flushed but refused the changes: too far behind to catch up, so start over on a new
            // connection at the next report.
            if flushed { disconnect(reconnectAt: 0) }
            reportsDropped.add(1, ordering: .relaxed)
            activity.any = true
            return activity
        }
        if !changes.isEmpty {
            pendingControl += Self.frames(for: changes)
            activity.any = true
            // A value collected before its series was retired is left out. Even when the same id is
            // declared again in these changes: the value may be the old series', and a counter's new
            // series would then go down from it at the next report, which refuses that report whole.
            let retired = Set(
                changes.compactMap { change -> UInt32? in
                    if case .retire(let id) = change { return id }
                    return nil
                })
            if !retired.isEmpty {
                builder.values.removeAll { retired.contains($0.id) }
                builder.histograms.removeAll { retired.contains($0.id) }
                peakSamples.removeAll { retired.contains($0.id) }
            }
        }

        var frames: [[UInt8]] = []
        if !builder.values.isEmpty { frames += FrameEncoder.values(builder.values) }
        if !builder.histograms.isEmpty { frames += FrameEncoder.histograms(builder.histograms) }
        if !peakSamples.isEmpty { frames += FrameEncoder.peaks(peakSamples) }
        if flushControl(), send(frames) {
            peaksSent()
            reportsSent.add(1, ordering: .relaxed)
            lastReportSent.store(number, ordering: .releasing)
            if reportsOnConnection < Self.stableReports {
                reportsOnConnection += 1
                if reportsOnConnection == Self.stableReports { backoff = Self.minimumBackoff }
            }
        } else {
            reportsDropped.add(1, ordering: .relaxed)
        }
        return activity
    }

    /// Whether `builder` differs from the previous report in anything but the values that move on
    /// their own in an idle process: executor lag (the probe), heap statistics, the enqueue count
    /// (judged separately, against the probes) and the dropped count (judged when sending).
    private func changed(_ builder: ReportBuilder) -> Bool {
        guard builder.values.count == previousValues.count, builder.histograms.count == previousHistograms.count
        else { return true }
        for (value, previous) in zip(builder.values, previousValues) {
            guard value.id == previous.id else { return true }
            if value.value.bitPattern != previous.value.bitPattern, !ignoredWhenIdle(value.id) { return true }
        }
        for (histogram, previous) in zip(builder.histograms, previousHistograms) {
            guard histogram.id == previous.id else { return true }
            if ignoredWhenIdle(histogram.id) { continue }
            if histogram.buckets != previous.buckets || histogram.sum.bitPattern != previous.sum.bitPattern {
                return true
            }
        }
        return false
    }

    private func ignoredWhenIdle(_ id: UInt32) -> Bool {
        id == builtin.executorLag.rawValue || id == builtin.heapAllocated.rawValue
            || id == builtin.heapFree.rawValue || id == builtin.jobsEnqueued.rawValue
            || id == builtin.reportsDropped.rawValue
    }

    /// Adds every monitor's values; true when some monitor counted a creation or an ending since the
    /// previous report (or is new).
    private func collectMonitors(into builder: inout ReportBuilder, peaks peakSamples: inout [PeakSample]) -> Bool {
        var changed = previousCreated.count != monitors.count
        if changed {
            previousCreated += Array(repeating: 0, count: max(0, monitors.count - previousCreated.count))
            previousFinished += Array(repeating: 0, count: max(0, monitors.count - previousFinished.count))
        }
        for (index, monitor) in monitors.enumerated() {
            let snapshot = TaskMonitor.snapshot(of: monitor.counters)
            let finished = snapshot.finished.reduce(0, &+)
            if snapshot.created != previousCreated[index] || finished != previousFinished[index] { changed = true }
            previousCreated[index] = snapshot.created
            previousFinished[index] = finished
            guard let series = monitor.series else { continue }
            builder.value(series.live, Double(snapshot.live))
            builder.value(series.created, Double(snapshot.created))
            for outcome in TaskOutcome.allCases {
                builder.value(series.finished[outcome.rawValue], Double(snapshot.finished(outcome)))
            }
            builder.histogram(series.duration, buckets: snapshot.durationBuckets, sum: snapshot.durationSum)
            peaks[index] = max(peaks[index], snapshot.live)
            peakSamples.append(PeakSample(id: series.live.rawValue, value: Double(peaks[index])))
            collectedLive[index] = snapshot.live
        }
        return changed
    }

    /// Starts the next peak window once a report carried this one's peaks. Until then each peak keeps
    /// its maximum: a burst while the daemon is stopped or gone shows in the first report it gets.
    private func peaksSent() {
        // `refreshMonitors` grows both arrays together.
        for index in peaks.indices {
            // The live value at collection also belongs to the next window.
            peaks[index] = collectedLive[index]
        }
    }

    private func collectBuiltins(into builder: inout ReportBuilder, enqueued: UInt64) {
        builder.value(builtin.jobsEnqueued, Double(enqueued))
        let lag = probe.histogram.snapshot()
        builder.histogram(builtin.executorLag, buckets: lag.buckets, sum: lag.sum)
        builder.value(builtin.heapAllocated, Double(heap.allocated))
        builder.value(builtin.heapFree, Double(heap.free))
        builder.value(builtin.reportsDropped, Double(reportsDropped.load(ordering: .relaxed)))
        builder.value(builtin.seriesDropped, Double(table.dropped))
    }

    /// Whether a connection is up, connecting (with exponential backoff) when it is due.
    private func connected(now: UInt64) -> Bool {
        if connection != nil { return true }
        guard now >= nextConnect else { return false }
        guard let fresh = Connection(path: configuration.socketPath) else {
            nextConnect = now + backoff
            backoff = min(backoff * 2, Self.maximumBackoff)
            return false
        }
        connection = fresh
        connections.add(1, ordering: .relaxed)
        reportsOnConnection = 0
        // A new connection knows nothing: hello, then every live declaration; values follow every report.
        let declarations = table.startOver(for: ObjectIdentifier(self))
        pendingControl = [FrameEncoder.hello(hello())]
        if !declarations.isEmpty { pendingControl += FrameEncoder.declare(declarations) }
        return true
    }

    /// The hello of every connection, within the protocol's limits: the daemon refuses a hello with an
    /// over-long string, too many labels or more bytes than a frame holds, and then every frame after
    /// it. So labels past the limit, with over-long names or past the frame's size are left out, and
    /// long values and process names are cut.
    private func hello() -> Hello {
        var labels: [Label] = []
        for (name, value) in configuration.labels.sorted(by: { $0.key < $1.key }) where labels.count < Wire.maxLabels {
            let sanitized = Names.sanitizeLabelName(name)
            // `process` and `pid` are the daemon's to set, `le` is every histogram bucket's own, and
            // promtool refuses `quantile` on anything but a summary.
            if sanitized == "process" || sanitized == "pid" || sanitized == "le" || sanitized == "quantile"
                || sanitized.utf8.count > Wire.maxNameLength
                || labels.contains(where: { $0.name == sanitized })
            {
                continue
            }
            labels.append(Label(sanitized, Wire.prefix(value, utf8Limit: Wire.maxTextLength)))
        }
        var hello = Hello(
            claimedPID: UInt32(truncatingIfNeeded: getpid()),
            intervalNanoseconds: interval,
            process: Wire.prefix(configuration.processName, utf8Limit: Wire.maxTextLength),
            clientVersion: "TaskWatch/\(TaskWatch.version)",
            labels: labels
        )
        while Wire.helloLabelBytes(hello.labels) > Wire.maxHelloLabelBytes { hello.labels.removeLast() }
        return hello
    }

    /// Declare and retire frames for `changes`, in their order.
    static func frames(for changes: [SeriesChange]) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var declarations: [SeriesDeclaration] = []
        var retired: [UInt32] = []
        for change in changes {
            switch change {
            case .declare(let declaration):
                if !retired.isEmpty { frames += FrameEncoder.retire(retired) }
                retired.removeAll()
                declarations.append(declaration)
            case .retire(let id):
                if !declarations.isEmpty { frames += FrameEncoder.declare(declarations) }
                declarations.removeAll()
                retired.append(id)
            }
        }
        if !declarations.isEmpty { frames += FrameEncoder.declare(declarations) }
        if !retired.isEmpty { frames += FrameEncoder.retire(retired) }
        return frames
    }

    /// Sends queued hello, declarations and retirements; false when the socket is full or the
    /// connection broke.
    /// What was sent leaves the queue; after a break the next connection rebuilds it from scratch.
    private func flushControl() -> Bool {
        var sent = 0
        defer { pendingControl.removeFirst(sent) }
        for frame in pendingControl {
            guard deliver(frame) else { return false }
            sent += 1
        }
        return true
    }

    private func send(_ frames: [[UInt8]]) -> Bool {
        for frame in frames where !deliver(frame) { return false }
        return true
    }

    private func deliver(_ frame: [UInt8]) -> Bool {
        guard let connection else { return false }
        var result = connection.send(frame)
        // A report larger than the socket's buffer (about three 64 KiB frames: some 900 monitors, or
        // large app histograms) met a full socket at the same frame every time while the daemon read
        // at full speed, and was dropped whole, forever. This thread waits a little for the daemon to
        // drain it: the app never waits on the reporter, and a report costs at most `roomWait` before it
        // is dropped and counted. Only a report already partly sent waits: one that meets a full socket
        // at its first frame is dropped at once, since the daemon did not even drain what came before
        // (it is stopped, or far behind). Waiting there too stalled sampling and probing by `roomWait`
        // at every report of a stopped daemon.
        while case .wouldBlock = result, reportUnderway, roomWaitLeft > 0 {
            roomWaits += 1
            let started = MonotonicClock.now()
            let room = connection.waitForRoom(milliseconds: Int32((roomWaitLeft + 999_999) / 1_000_000))
            roomWaitLeft -= min(roomWaitLeft, max(1, MonotonicClock.now() &- started))
            guard room else { break }
            result = connection.send(frame)
        }
        switch result {
        case .sent:
            reportUnderway = true
            return true
        case .wouldBlock:
            return false
        case .broken, .lost:
            // Lost: the app closed the descriptor (a `close` done twice) and the number may be its own
            // now; `Connection` neither wrote there nor closes it. A new connection takes a new number.
            if case .lost = result { descriptorsLost.add(1, ordering: .relaxed) }
            if reportsOnConnection >= Self.stableReports {
                // A connection that carried reports: the daemon went away (a restart). Back at once.
                backoff = Self.minimumBackoff
                disconnect(reconnectAt: 0)
            } else {
                // Closed right after connecting: refused. Wait, and wait longer each time.
                disconnect(reconnectAt: MonotonicClock.now() + backoff)
                backoff = min(backoff * 2, Self.maximumBackoff)
            }
            return false
        }
    }

    /// Drops the connection; the next one, at `reconnectAt` or later, starts over from every live
    /// declaration. `pendingControl` stays as it is: `flushControl` may be iterating it, and
    /// `connected` replaces it on the next connection anyway.
    private func disconnect(reconnectAt: UInt64) {
        connection = nil
        table.forget(ObjectIdentifier(self))
        nextConnect = reconnectAt
    }
}
