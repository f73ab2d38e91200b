import Synchronization
import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

enum Measure {
    static let monitor = TaskMonitor("burst")

    /// Sleeps `seconds` and reports the process's CPU time over that period, from `/proc/self/stat`
    /// (utime + stime, in clock ticks) and from `CLOCK_PROCESS_CPUTIME_ID` (nanoseconds).
    static func idleCPU(seconds: Int, startReporter: Bool) -> String {
        if startReporter { TaskWatch.start() }
        // Let start-up (connection, declarations) settle before the window opens.
        usleep(500_000)
        let ticksBefore = procStatTicks()
        let cpuBefore = cpuNanoseconds(CLOCK_PROCESS_CPUTIME_ID)
        let wallBefore = cpuNanoseconds(CLOCK_MONOTONIC)
        var request = timespec(tv_sec: seconds, tv_nsec: 0)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
        let ticks = procStatTicks() - ticksBefore
        let cpu = cpuNanoseconds(CLOCK_PROCESS_CPUTIME_ID) - cpuBefore
        let wall = cpuNanoseconds(CLOCK_MONOTONIC) - wallBefore
        let hertz = Int(sysconf(Int32(_SC_CLK_TCK)))
        return "{\"profile\":\"\(Profile.name)\",\"reporter\":\(startReporter),"
            + "\"interval_ns\":\(intervalNanoseconds()),"
            + "\"wall_ns\":\(wall),\"proc_stat_ticks\":\(ticks),\"clock_ticks_per_second\":\(hertz),"
            + "\"cpu_ns\":\(cpu)}"
    }

    /// The reporter thread's share of a core while `monitors` monitors all keep spawning for `seconds`:
    /// its sampling reads every monitor's counters every sample period, so its cost grows with their
    /// number. Spawns go round the monitors in batches, so every one changes between samples.
    static func busyMonitors(_ monitors: Int, seconds: Int) async -> String {
        TaskWatch.start()
        let list = (0..<monitors).map { TaskMonitor("busy_\($0)") }
        let stop = MonotonicDeadline(seconds: 0.5)
        while !stop.passed { _ = await spawnRound(list) }
        guard let thread = threadDirectory(named: "taskwatch"), let before = threadCPUNanoseconds(thread) else {
            return "{\"error\":\"no reporter thread\"}"
        }
        let wallBefore = cpuNanoseconds(CLOCK_MONOTONIC)
        var spawned = 0
        let end = MonotonicDeadline(seconds: Double(seconds))
        while !end.passed { spawned += await spawnRound(list) }
        let cpu = (threadCPUNanoseconds(thread) ?? before) - before
        let wall = cpuNanoseconds(CLOCK_MONOTONIC) - wallBefore
        return "{\"monitors\":\(monitors),\"wall_ns\":\(wall),\"reporter_cpu_ns\":\(cpu),"
            + "\"reporter_share\":\(Double(cpu) / Double(wall)),\"tasks\":\(spawned)}"
    }

    /// One task in each monitor, awaited together; returns how many.
    private static func spawnRound(_ list: [TaskMonitor]) async -> Int {
        await withTaskGroup(of: Void.self) { group in
            for monitor in list {
                let ticket = monitor.ticket()
                group.addTask { await ticket.run {} }
            }
        }
        return list.count
    }

    /// The CPU a loop costs that does nothing but sleep until the next deadline, `periodMicroseconds`
    /// apart, for `seconds`: on a virtual machine each timed wake-up has a price of its own.
    static func wakeFloor(periodMicroseconds: Int, seconds: Int) -> String {
        let period = UInt64(periodMicroseconds) * 1_000
        let wakeups = UInt64(seconds) * 1_000_000_000 / period
        let cpuBefore = cpuNanoseconds(CLOCK_PROCESS_CPUTIME_ID)
        let wallBefore = cpuNanoseconds(CLOCK_MONOTONIC)
        var deadline = wallBefore
        for _ in 0..<wakeups {
            deadline += period
            var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == EINTR {}
        }
        let cpu = cpuNanoseconds(CLOCK_PROCESS_CPUTIME_ID) - cpuBefore
        let wall = cpuNanoseconds(CLOCK_MONOTONIC) - wallBefore
        return "{\"period_ns\":\(period),\"wakeups\":\(wakeups),\"wall_ns\":\(wall),\"cpu_ns\":\(cpu)}"
    }

    /// Starts `count` tasks that stay alive together for `holdMilliseconds` while a thread polls
    /// `/metrics`. Reports when the daemon first showed the burst (any live task of this pid) and its
    /// full height, counted from the burst's start and from the end of spawning, and the
    /// `swift_tasks_peak` the daemon shows afterwards against the true height.
    static func burst(_ count: Int, holdMilliseconds: Int, port: UInt16) async -> String {
        let pid = getpid()
        _ = monitor  // Registered now, so the daemon shows its zero series before the burst.
        let live = MetricsPoller.Selector(name: "swift_tasks", pid: pid, task: "burst")
        let peak = MetricsPoller.Selector(name: "swift_tasks_peak", pid: pid, task: "burst")
        // The reporter has connected and declared once the daemon shows our zero.
        let connected = MetricsPoller.poll(port: port, timeoutNanoseconds: 10_000_000_000) { text in
            MetricsPoller.value(live, in: text) == 0
        }
        guard connected != nil else { return "{\"error\":\"the daemon never showed this process\"}" }

        let watcher = MetricsPoller.Watcher(port: port, selector: live, full: Double(count))
        watcher.start()
        let gauge = Gauge()
        let start = cpuNanoseconds(CLOCK_MONOTONIC)
        watcher.burstStart.store(start, ordering: .releasing)
        let deadline = ContinuousClock.now + .milliseconds(holdMilliseconds)
        var tasks: [Task<Void, Never>] = []
        tasks.reserveCapacity(count)
        for _ in 0..<count {
            tasks.append(
                monitor.task {
                    gauge.enter()
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    gauge.leave()
                })
        }
        let spawned = cpuNanoseconds(CLOCK_MONOTONIC)
        for task in tasks { await task.value }
        let ended = cpuNanoseconds(CLOCK_MONOTONIC)
        let (firstSeen, fullSeen) = watcher.stop()
        // Let the last reports of the burst's fall arrive, then read the peak (held for --peak.window).
        usleep(200_000)
        var peakValue = -1.0
        _ = MetricsPoller.poll(port: port, timeoutNanoseconds: 2_000_000_000) { text in
            peakValue = MetricsPoller.value(peak, in: text) ?? -1
            return peakValue >= 0
        }
        let height = gauge.highest.load(ordering: .relaxed)
        func since(_ from: UInt64, _ to: UInt64) -> String { to == 0 ? "null" : "\(Int64(to) - Int64(from))" }
        return "{\"profile\":\"\(Profile.name)\",\"tasks\":\(count),\"hold_ms\":\(holdMilliseconds),"
            + "\"interval_ns\":\(intervalNanoseconds()),"
            + "\"spawn_ns\":\(spawned - start),\"burst_ns\":\(ended - start),"
            + "\"first_seen_after_start_ns\":\(since(start, firstSeen)),"
            + "\"full_seen_after_spawned_ns\":\(since(spawned, fullSeen)),"
            + "\"true_height\":\(height),\"peak_on_metrics\":\(Int(peakValue)),"
            + "\"peak_fidelity\":\(height == 0 ? 0 : peakValue / Double(height))}"
    }

    static func intervalNanoseconds() -> Int64 {
        let (seconds, attoseconds) = Configuration().interval.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// The first kilobyte of a /proc file, or nil.
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// The /proc/self/task path of the thread named `name`, or nil.
    static func threadDirectory(named name: String) -> String? {
        guard let directory = opendir("/proc/self/task") else { return nil }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard tid.first?.isNumber == true else { continue }
            let path = "/proc/self/task/" + tid
            if readProcFile(path + "/comm")?.split(separator: "\n").first.map(String.init) == name { return path }
        }
        return nil
    }

    /// CPU nanoseconds a thread has run, from its schedstat (nanosecond resolution, unlike stat's
    /// clock ticks); `directory` is what `threadDirectory(named:)` returned.
    static func threadCPUNanoseconds(_ directory: String) -> UInt64? {
        readProcFile(directory + "/schedstat")?.split(separator: " ").first.flatMap { UInt64($0) }
    }

    static func procStatTicks() -> Int {
        guard let text = readProcFile("/proc/self/stat") else { return 0 }
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        guard let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Int(fields[11]), let stime = Int(fields[12]) else { return 0 }
        return utime + stime
    }

    static func cpuNanoseconds(_ clock: clockid_t) -> UInt64 {
        var now = timespec()
        clock_gettime(clock, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// Counts task bodies running now and the most ever running at once: a burst's true height.
final class Gauge: Sendable {
    let running = Atomic<UInt64>(0)
    let highest = Atomic<UInt64>(0)

    func enter() {
        let now = running.wrappingAdd(1, ordering: .relaxed).newValue
        var seen = highest.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, current) = highest.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = current
        }
    }

    func leave() { running.wrappingSubtract(1, ordering: .relaxed) }
}

/// A point on the monotonic clock `seconds` from now.
struct MonotonicDeadline {
    let nanoseconds: UInt64

    init(seconds: Double) {
        nanoseconds = Measure.cpuNanoseconds(CLOCK_MONOTONIC) + UInt64(seconds * 1e9)
    }

    var passed: Bool { Measure.cpuNanoseconds(CLOCK_MONOTONIC) >= nanoseconds }
}
