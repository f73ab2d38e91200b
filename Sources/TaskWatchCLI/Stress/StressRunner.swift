import Synchronization
import TaskWatch

/// How `taskwatch stress` turns jobs into tasks.
enum StressMode: String, CaseIterable, Codable, Sendable {
    /// One task per job.
    case spawn
    /// A fixed set of worker tasks fed through an `AsyncStream`.
    case pool
    /// One child of a single task group per job.
    case group
}

/// What one stress run does.
struct StressOptions: Sendable {
    var mode: StressMode = .spawn
    /// Jobs to submit; nil submits until `durationNanoseconds` passes.
    var tasks: Int? = 10_000
    /// Pool: the number of workers. Spawn and group: the most jobs in flight (nil: no cap).
    var concurrency: Int?
    /// How long each job stays suspended.
    var holdNanoseconds: UInt64 = 1_000_000_000
    /// Stop submitting after this long.
    var durationNanoseconds: UInt64?
    /// Jobs per second; 0 submits as fast as possible.
    var rate: Double = 0
    /// The feedback loop's limit on live tasks (jobs in flight, for the pool).
    var limit: UInt64?
    /// How often the feedback loop measures and adjusts.
    var stepNanoseconds: UInt64 = 1_000_000
    var progress: ProgressStyle = .none
    /// `TASKWATCH_DISABLED` is set, so the report says that nothing was counted.
    var instrumentationDisabled = false

    /// The ceiling of the feedback loop when `--limit` is given without `--rate`.
    static let defaultLimitedRate = 20_000.0
    /// Pool workers when `--concurrency` is not given.
    static let defaultWorkers = 64
}

/// Counters shared by the jobs, the admission loop and the observer.
final class StressCounters: Sendable {
    let submitted = Atomic<Int>(0)
    let completed = Atomic<Int>(0)
    let workers = Atomic<Int>(0)
    let firstCompletion = Atomic<UInt64>(0)
    let lastCompletion = Atomic<UInt64>(0)

    var inFlight: Int { max(0, submitted.load(ordering: .relaxed) - completed.load(ordering: .relaxed)) }

    func complete() {
        let now = monotonicNanoseconds()
        _ = firstCompletion.compareExchange(expected: 0, desired: now, ordering: .relaxed)
        lastCompletion.store(now, ordering: .relaxed)
        completed.add(1, ordering: .relaxed)
    }
}

/// One job: stay suspended for `hold` (less when cancelled), then count as done.
@Sendable func stressJob(_ counters: StressCounters, _ hold: UInt64) async {
    if hold > 0 { try? await Task.sleep(nanoseconds: hold) }
    counters.complete()
}

/// What every spawn-mode job needs, in one reference, so that its closure captures two words as it did
/// before the stop bookkeeping: a bigger capture is a bigger allocation for every task, which the run
/// would count as the task's.
final class SpawnContext: Sendable {
    let counters: StressCounters
    let spawned: SpawnedTasks
    let hold: UInt64

    init(counters: StressCounters, spawned: SpawnedTasks, hold: UInt64) {
        self.counters = counters
        self.spawned = spawned
        self.hold = hold
    }
}

/// Decides, step by step, how many jobs to admit: the pacing, the cap, the end, and the feedback loop.
struct Admission {
    let options: StressOptions
    let counters: StressCounters
    let started: UInt64
    var controller: AdmissionController
    var bucket = TokenBucket()
    var last: UInt64
    var stats: LimitTracker?
    var peakInFlight = 0
    private(set) var finished: UInt64 = 0

    init(options: StressOptions, counters: StressCounters) {
        self.options = options
        self.counters = counters
        started = monotonicNanoseconds()
        last = started
        let ceiling =
            options.rate > 0 ? options.rate : (options.limit == nil ? .infinity : StressOptions.defaultLimitedRate)
        controller = AdmissionController(limit: options.limit, ceiling: ceiling)
        stats = options.limit.map { LimitTracker(limit: $0, started: started) }
    }

    var unpaced: Bool { controller.ceiling == .infinity }

    /// The jobs to admit now (possibly 0), or nil once submitting is over. Sleeps one step when paced.
    mutating func next() async -> Int? {
        let submitted = counters.submitted.load(ordering: .relaxed)
        let remaining = options.tasks.map { $0 - submitted } ?? Int.max
        var now = monotonicNanoseconds()
        let overdue = options.durationNanoseconds.map { now - started >= $0 } ?? false
        if remaining <= 0 || overdue || StopSignal.isRequested {
            finished = now
            return nil
        }
        var room = Int.max
        if options.mode != .pool, let cap = options.concurrency { room = max(0, cap - counters.inFlight) }
        if unpaced {
            // Tracked here too: the observer's 100 ms samples miss a run shorter than one.
            peakInFlight = max(peakInFlight, counters.inFlight)
            if room == 0 {
                await StopSignal.sleep(nanoseconds: options.stepNanoseconds)
                return 0
            }
            await Task.yield()
            return min(remaining, room, 1_000)
        }
        await StopSignal.sleep(nanoseconds: options.stepNanoseconds)
        now = monotonicNanoseconds()
        let live = counters.inFlight
        peakInFlight = max(peakInFlight, live)
        stats?.record(live: live, now: now)
        let rate = controller.update(live: UInt64(live))
        let admitted = bucket.admit(
            rate: rate, elapsedNanoseconds: now - last, stepNanoseconds: options.stepNanoseconds)
        last = now
        return min(admitted, remaining, room)
    }
}

/// Statistics of the live count under `--limit`, after warm-up (the first time it reaches the limit).
struct LimitTracker: Sendable {
    let limit: UInt64
    let started: UInt64
    var warmedUp: UInt64 = 0
    var peak = 0
    var sum = 0.0
    var samples = 0
    var within = 0

    init(limit: UInt64, started: UInt64) {
        self.limit = limit
        self.started = started
    }

    mutating func record(live: Int, now: UInt64) {
        if warmedUp == 0 {
            guard live >= Int(limit) else { return }
            warmedUp = now
        }
        peak = max(peak, live)
        sum += Double(live)
        samples += 1
        if abs(Double(live) - Double(limit)) <= 0.1 * Double(limit) { within += 1 }
    }

    var result: LimitStats {
        LimitStats(
            limit: limit,
            warmupSeconds: warmedUp == 0 ? nil : Double(warmedUp - started) / 1e9,
            peakAfterWarmup: peak,
            meanAfterWarmup: samples == 0 ? 0 : sum / Double(samples),
            fractionWithin10Percent: samples == 0 ? 0 : Double(within) / Double(samples),
            samplesAfterWarmup: samples)
    }
}

/// Runs one stress workload in this process and measures it.
struct StressRunner {
    let options: StressOptions
    let counters = StressCounters()

    var monitor: TaskMonitor { TaskMonitor("stress-\(options.mode.rawValue)") }

    /// The most spawn-mode tasks expected alive at once, for `SpawnedTasks` to reserve room for: the
    /// jobs, or the cap on them in flight, or what the rate admits within one hold; 0 when unknown.
    /// At most `maximumReserved`: room reserved is room allocated, and `--tasks` may be any number.
    var expectedInFlight: Int {
        var expected = options.tasks ?? Int.max
        if let cap = options.concurrency { expected = min(expected, cap) }
        if options.rate > 0 {
            // Both bounded (--rate, DurationText), so the product is far inside Int's range.
            expected = min(expected, Int(options.rate * Double(options.holdNanoseconds) / 1e9) + 1)
        }
        return expected == Int.max ? 0 : min(expected, Self.maximumReserved)
    }

    /// Two million tasks: 16 MiB of slots, and 4 GiB of suspended tasks to go with them.
    static let maximumReserved = 1 << 21

    func run() async -> StressReport {
        // Made before the baseline, so its room counts as there before the run (see SpawnedTasks).
        let spawned = SpawnedTasks(expected: options.mode == .spawn ? expectedInFlight : 0)
        ProcessMemory.trim()
        let before = ProcessMemory.sample()
        let observer = Observer(options: options, counters: counters, before: before)
        let watching = Task.detached { await observer.run() }
        var admission = Admission(options: options, counters: counters)
        switch options.mode {
        case .spawn: await runSpawn(&admission, observer: observer, spawned: spawned)
        case .group: await runGroup(&admission, observer: observer)
        case .pool: await runPool(&admission, observer: observer)
        }
        let drained = monotonicNanoseconds()
        let interrupted = StopSignal.isRequested
        observer.stop()
        await watching.value
        let afterDrain = ProcessMemory.sample()
        let released = ProcessMemory.trim()
        let afterTrim = ProcessMemory.sample()
        var report = report(
            admission: admission, drained: drained, before: before, peak: observer.peak, afterDrain: afterDrain,
            afterTrim: afterTrim, released: released)
        report.interrupted = interrupted
        return report
    }

    /// Waits for the jobs to end, polling every millisecond. On a stop request (SIGINT or SIGTERM) it
    /// calls `cancel` once and goes on waiting, which is then short: a cancelled job's hold ends at
    /// once, and jobs still queued are dropped. Without this, a stop would wait out every hold (a
    /// 100,000-job pool of 64 workers holding 1 s each drains for 26 minutes).
    private func drain(until done: () -> Bool, cancel: () -> Void) async {
        var cancelled = false
        while !done() {
            if !cancelled, StopSignal.isRequested {
                cancelled = true
                cancel()
            }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
    }

    private func runSpawn(_ admission: inout Admission, observer: Observer, spawned: SpawnedTasks) async {
        let monitor = self.monitor
        let counters = self.counters
        let context = SpawnContext(counters: counters, spawned: spawned, hold: options.holdNanoseconds)
        var batch: [(job: Int, task: Task<Void, Never>)] = []
        while let count = await admission.next() {
            for _ in 0..<count {
                let job = counters.submitted.add(1, ordering: .relaxed).newValue
                let task = monitor.detached {
                    await stressJob(context.counters, context.hold)
                    context.spawned.ended(job)
                }
                batch.append((job, task))
            }
            spawned.add(&batch)
        }
        observer.capture()
        // Every job ends after its hold; wait for the last one. The monitor counts a task ended a moment
        // after its job counts itself, and the final report must see it ended too.
        await drain(
            until: {
                counters.completed.load(ordering: .relaxed) >= counters.submitted.load(ordering: .relaxed)
                    && monitor.snapshot().live == 0
            }, cancel: spawned.cancelAll)
    }

    private func runGroup(_ admission: inout Admission, observer: Observer) async {
        let monitor = self.monitor
        let counters = self.counters
        let hold = options.holdNanoseconds
        var local = admission
        await withDiscardingTaskGroup { group in
            while let count = await local.next() {
                for _ in 0..<count {
                    counters.submitted.add(1, ordering: .relaxed)
                    group.addTask(monitor: monitor) { await stressJob(counters, hold) }
                }
            }
            observer.capture()
            // The group waits for its children by itself, but a stop has to cancel them first.
            await drain(
                until: { counters.completed.load(ordering: .relaxed) >= counters.submitted.load(ordering: .relaxed) },
                cancel: { group.cancelAll() })
        }
        admission = local
    }

    private func runPool(_ admission: inout Admission, observer: Observer) async {
        let monitor = self.monitor
        let counters = self.counters
        let hold = options.holdNanoseconds
        let (jobs, continuation) = AsyncStream.makeStream(of: UInt32.self, bufferingPolicy: .unbounded)
        let workerCount = max(1, options.concurrency ?? StressOptions.defaultWorkers)
        let workers = (0..<workerCount).map { _ in
            counters.workers.add(1, ordering: .relaxed)
            return monitor.detached {
                for await _ in jobs {
                    // Cancelled by a stop: the jobs still queued are dropped, not run.
                    if Task.isCancelled { break }
                    await stressJob(counters, hold)
                }
                counters.workers.subtract(1, ordering: .relaxed)
            }
        }
        while let count = await admission.next() {
            for _ in 0..<count {
                counters.submitted.add(1, ordering: .relaxed)
                continuation.yield(0)
            }
        }
        observer.capture()
        continuation.finish()
        await drain(
            until: { counters.workers.load(ordering: .relaxed) == 0 },
            cancel: { for worker in workers { worker.cancel() } })
        for worker in workers { await worker.value }
    }

    private func report(
        admission: Admission, drained: UInt64, before: MemorySample, peak: PeakSample, afterDrain: MemorySample,
        afterTrim: MemorySample, released: Bool
    ) -> StressReport {
        let jobs = counters.submitted.load(ordering: .relaxed)
        let submitSeconds = Double(admission.finished - admission.started) / 1e9
        let first = counters.firstCompletion.load(ordering: .relaxed)
        let last = counters.lastCompletion.load(ordering: .relaxed)
        let completionSeconds = last > first ? Double(last - first) / 1e9 : 0
        // Jobs that ended, not jobs submitted (a stop drops queued ones), and n completions span n − 1
        // intervals.
        let ended = counters.completed.load(ordering: .relaxed)
        let heapDelta = Double(peak.memory.heapInUseBytes) - Double(before.heapInUseBytes)
        let rssDelta = Double(peak.memory.rssBytes) - Double(before.rssBytes)
        func per(_ delta: Double, _ count: Int) -> Double { count > 0 ? delta / Double(count) : 0 }
        return StressReport(
            mode: options.mode.rawValue,
            profile: Profile.name,
            instrumentationDisabled: options.instrumentationDisabled,
            jobs: jobs,
            jobsEnded: ended,
            concurrency: options.mode == .pool
                ? max(1, options.concurrency ?? StressOptions.defaultWorkers) : options.concurrency,
            holdSeconds: Double(options.holdNanoseconds) / 1e9,
            peakLiveTasks: max(peak.live, options.mode == .pool ? 0 : admission.peakInFlight),
            peakJobsInFlight: max(peak.jobs, admission.peakInFlight),
            before: before,
            atPeak: peak.memory,
            liveTasksAtPeakSample: peak.live,
            jobsAtPeakSample: peak.jobs,
            heapBytesPerLiveTask: per(heapDelta, peak.live),
            rssBytesPerLiveTask: per(rssDelta, peak.live),
            heapBytesPerJob: per(heapDelta, peak.jobs),
            rssBytesPerJob: per(rssDelta, peak.jobs),
            creationRate: submitSeconds > 0 ? Double(jobs) / submitSeconds : 0,
            completionRate: completionSeconds > 0 ? Double(ended - 1) / completionSeconds : 0,
            submitSeconds: submitSeconds,
            drainSeconds: Double(drained - admission.finished) / 1e9,
            afterDrain: afterDrain,
            afterTrim: afterTrim,
            trimReleasedMemory: released,
            limitStats: admission.stats?.result)
    }
}
