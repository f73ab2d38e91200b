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
final class Reporter: @unchecked Sendable {
    // @unchecked: the `var`s below belong to the reporter thread alone (written before it starts or
    // after it is joined otherwise); everything shared with other threads is atomic or immutable.

    private static let sharedReporter = Mutex<Reporter?>(nil)

    /// The reporter started by `TaskWatch.start`, if any.
    static var shared: Reporter? { sharedReporter.withLock { $0 } }

    static func startShared(_ configuration: Configuration) -> Bool {
        sharedReporter.withLock { shared in
            guard shared == nil else { return false }
            let reporter = Reporter(configuration: configuration)
            reporter.start()
            shared = reporter
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

    /// Reports that could not be sent: no daemon, a full socket buffer, or a broken connection.
    let reportsDropped = Atomic<UInt64>(0)
    /// Reports sent in full.
    let reportsSent = Atomic<UInt64>(0)
    /// Successful connections, the first included.
    let connections = Atomic<UInt64>(0)
    private let stopRequested = Atomic<Bool>(false)
    private var thread: pthread_t?

    // Reporter-thread state.
    private var connection: Connection?
    private var pendingControl: [[UInt8]] = []
    private var declarationCursor = 0
    private var backoff: UInt64 = Reporter.minimumBackoff
    private var nextConnect: UInt64 = 0
    private var monitors: [MonitorRegistry.Entry] = []
    private var peaks: [UInt64] = []
    private var heap = HeapProbe()

    static let minimumBackoff: UInt64 = 10_000_000
    static let maximumBackoff: UInt64 = 1_000_000_000

    init(configuration: Configuration) {
        self.configuration = configuration
        interval = max(configuration.interval.nanoseconds, 100_000)
        probePeriod = max(configuration.probeInterval.nanoseconds, 1_000_000)
        // Live counts are sampled four times per report, at least every 250 µs apart: a burst that
        // rises and falls within a report still shows its peak within a quarter interval of rise.
        samplePeriod = max(interval / 4, 250_000)
    }

    /// Installs the enqueue hook and starts the thread.
    func start() {
        tw_enqueue_hook_install()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 256 * 1024)
        var handle = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(
            &handle, &attributes,
            { context in
                guard let context else { return nil }
                let reporter = Unmanaged<Reporter>.fromOpaque(context).takeRetainedValue()
                reporter.run()
                return nil
            }, context)
        pthread_attr_destroy(&attributes)
        if result == 0 {
            thread = handle
        } else {
            Unmanaged<Reporter>.fromOpaque(context).release()
        }
    }

    /// Stops the thread, says goodbye to the daemon and closes the connection. For tests and shutdown.
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        guard let thread else { return }
        pthread_join(thread, nil)
        self.thread = nil
        if let connection {
            _ = connection.send(FrameEncoder.goodbye())
        }
        connection = nil
    }

    private func run() {
        var now = MonotonicClock.now()
        var nextSample = now
        var nextProbe = now
        var nextReport = now + interval
        refreshMonitors()
        heap.refresh(now: now)
        while !stopRequested.load(ordering: .acquiring) {
            now = MonotonicClock.now()
            if now >= nextSample {
                sampleLive()
                nextSample = Self.advance(nextSample, by: samplePeriod, now: now)
            }
            if now >= nextProbe {
                probe.schedule()
                nextProbe = Self.advance(nextProbe, by: probePeriod, now: now)
            }
            if now >= nextReport {
                heap.refresh(now: now)
                report(now: now)
                nextReport = Self.advance(nextReport, by: interval, now: now)
            }
            MonotonicClock.sleep(until: min(nextSample, nextProbe, nextReport))
        }
    }

    /// The next deadline after `deadline`; deadlines missed entirely are skipped, not caught up.
    private static func advance(_ deadline: UInt64, by period: UInt64, now: UInt64) -> UInt64 {
        let next = deadline + period
        return next > now ? next : now + period
    }

    private func refreshMonitors() {
        monitors = MonitorRegistry.shared.entries()
        if peaks.count < monitors.count { peaks += Array(repeating: 0, count: monitors.count - peaks.count) }
    }

    private func sampleLive() {
        for index in monitors.indices {
            peaks[index] = max(peaks[index], TaskMonitor.live(of: monitors[index].counters))
        }
    }

    private func report(now: UInt64) {
        refreshMonitors()
        var builder = ReportBuilder()
        var peakSamples: [PeakSample] = []
        collectMonitors(into: &builder, peaks: &peakSamples)
        collectBuiltins(into: &builder)
        for source in table.sources() { source.collect(into: &builder) }

        guard connected(now: now) else {
            reportsDropped.add(1, ordering: .relaxed)
            return
        }
        // Declarations are fetched after the sources ran, so every id they reported is declared first.
        let (declarations, cursor) = table.declarations(from: declarationCursor)
        declarationCursor = cursor
        if !declarations.isEmpty { pendingControl += FrameEncoder.declare(declarations) }

        var frames: [[UInt8]] = []
        if !builder.values.isEmpty { frames += FrameEncoder.values(builder.values) }
        if !builder.histograms.isEmpty { frames += FrameEncoder.histograms(builder.histograms) }
        if !peakSamples.isEmpty { frames += FrameEncoder.peaks(peakSamples) }
        if flushControl(), send(frames) {
            reportsSent.add(1, ordering: .relaxed)
        } else {
            reportsDropped.add(1, ordering: .relaxed)
        }
    }

    private func collectMonitors(into builder: inout ReportBuilder, peaks peakSamples: inout [PeakSample]) {
        for (index, monitor) in monitors.enumerated() {
            guard let series = monitor.series else { continue }
            let snapshot = TaskMonitor.snapshot(of: monitor.counters)
            builder.value(series.live, Double(snapshot.live))
            builder.value(series.created, Double(snapshot.created))
            for outcome in TaskOutcome.allCases {
                builder.value(series.finished[outcome.rawValue], Double(snapshot.finished(outcome)))
            }
            builder.histogram(series.duration, buckets: snapshot.durationBuckets, sum: snapshot.durationSum)
            let peak = max(peaks[index], snapshot.live)
            peakSamples.append(PeakSample(id: series.live.rawValue, value: Double(peak)))
            // The live value now also belongs to the next window.
            peaks[index] = snapshot.live
        }
    }

    private func collectBuiltins(into builder: inout ReportBuilder) {
        builder.value(builtin.jobsEnqueued, Double(tw_enqueue_count()))
        let lag = probe.histogram.snapshot()
        builder.histogram(builtin.executorLag, buckets: lag.buckets, sum: lag.sum)
        builder.value(builtin.heapAllocated, Double(heap.allocated))
        builder.value(builtin.heapFree, Double(heap.free))
        builder.value(builtin.reportsDropped, Double(reportsDropped.load(ordering: .relaxed)))
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
        backoff = Self.minimumBackoff
        // A new connection knows nothing: hello, then every live declaration; values follow every report.
        let (declarations, cursor) = table.declarations(from: 0)
        declarationCursor = cursor
        pendingControl = [FrameEncoder.hello(hello())]
        if !declarations.isEmpty { pendingControl += FrameEncoder.declare(declarations) }
        return true
    }

    private func hello() -> Hello {
        var labels: [Label] = []
        for (name, value) in configuration.labels.sorted(by: { $0.key < $1.key }) {
            let sanitized = Names.sanitizeLabelName(name)
            // `process` and `pid` are the daemon's to set.
            if sanitized == "process" || sanitized == "pid" || labels.contains(where: { $0.name == sanitized }) {
                continue
            }
            labels.append(Label(sanitized, value))
        }
        return Hello(
            claimedPID: UInt32(truncatingIfNeeded: getpid()),
            intervalNanoseconds: interval,
            process: configuration.processName,
            clientVersion: "TaskWatch/\(TaskWatch.version)",
            labels: labels
        )
    }

    /// Sends queued hello and declarations; false when the socket is full or the connection broke.
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
        switch connection.send(frame) {
        case .sent:
            return true
        case .wouldBlock:
            return false
        case .broken:
            self.connection = nil
            pendingControl = []
            nextConnect = 0
            return false
        }
    }
}
