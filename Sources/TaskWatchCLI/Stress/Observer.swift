import Glibc
import Synchronization

/// How progress is shown while a stress run goes on.
enum ProgressStyle: Sendable {
    case none
    /// One line rewritten in place on a terminal.
    case terminal
    /// A plain line a second, for logs and pipes.
    case plain
}

/// Memory at the moment the most work was outstanding.
struct PeakSample: Sendable {
    var live = 0
    var jobs = 0
    var memory = MemorySample(rssBytes: 0, heapInUseBytes: 0, heapFreeBytes: 0)
}

/// Samples the run every 100 ms off the admission path: keeps the memory figures taken at the
/// highest outstanding count, and prints progress.
final class Observer: Sendable {
    static let period: UInt64 = 100_000_000

    let options: StressOptions
    let counters: StressCounters
    let before: MemorySample
    /// The before figures until a sample is taken: a run shorter than the first sample took none, and
    /// reported 0 B at the peak.
    private let state: Mutex<PeakSample>
    private let stopped = Atomic<Bool>(false)

    init(options: StressOptions, counters: StressCounters, before: MemorySample) {
        self.options = options
        self.counters = counters
        self.before = before
        state = Mutex(PeakSample(memory: before))
    }

    var peak: PeakSample { state.withLock { $0 } }

    /// Live tasks: one per job in flight, except in the pool, where the workers are the tasks.
    var live: Int { options.mode == .pool ? counters.workers.load(ordering: .relaxed) : counters.inFlight }

    /// Takes a sample now; keeps it if more work is outstanding than at the best one so far.
    func capture() {
        let jobs = counters.inFlight
        let live = self.live
        let key = options.mode == .pool ? jobs : live
        guard key > 0 else { return }
        let best = state.withLock { options.mode == .pool ? $0.jobs : $0.live }
        guard key > best else { return }
        let memory = ProcessMemory.sample()
        state.withLock { current in
            if key > (options.mode == .pool ? current.jobs : current.live) {
                current = PeakSample(live: live, jobs: jobs, memory: memory)
            }
        }
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    func run() async {
        let every: UInt64 = options.progress == .terminal ? 250_000_000 : 1_000_000_000
        let started = monotonicNanoseconds()
        var lastPrint = started
        var lastSubmitted = 0
        while !stopped.load(ordering: .relaxed) {
            capture()
            let now = monotonicNanoseconds()
            if options.progress != .none, now - lastPrint >= every {
                let submitted = counters.submitted.load(ordering: .relaxed)
                let rate = Double(submitted - lastSubmitted) / (Double(now - lastPrint) / 1e9)
                lastSubmitted = submitted
                lastPrint = now
                let line = progressLine(elapsed: Double(now - started) / 1e9, rate: rate)
                if options.progress == .terminal {
                    // Cut to the terminal's width: a wrapped line is not cleared by the next rewrite,
                    // and each would leave a stale row behind.
                    let width = Terminal.columns(STDERR_FILENO) ?? 80
                    Terminal.write(Terminal.clearLine + line.prefix(max(1, width - 1)), to: STDERR_FILENO)
                } else {
                    Terminal.line(line, to: STDERR_FILENO)
                }
            }
            try? await Task.sleep(nanoseconds: Self.period)
        }
        if options.progress == .terminal { Terminal.write(Terminal.clearLine, to: STDERR_FILENO) }
    }

    func progressLine(elapsed: Double, rate: Double) -> String {
        let memory = ProcessMemory.sample()
        return "stress \(options.mode.rawValue) t=\(Format.fixed(elapsed, 1))s live=\(live) "
            + "in_flight=\(counters.inFlight) submitted=\(counters.submitted.load(ordering: .relaxed)) "
            + "done=\(counters.completed.load(ordering: .relaxed)) rate=\(Format.count(rate))/s "
            + "rss=\(Format.bytes(memory.rssBytes)) heap=\(Format.bytes(memory.heapInUseBytes))"
    }
}
