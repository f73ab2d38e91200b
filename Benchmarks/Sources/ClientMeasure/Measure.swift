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

    /// `count` tasks spawned and completed in batches of 1,000, the spawn-heavy workload.
    static func spawnload(_ count: Int) async -> String {
        let start = cpuNanoseconds(CLOCK_MONOTONIC)
        var remaining = count
        var batch: [Task<Int, Never>] = []
        batch.reserveCapacity(1_000)
        while remaining > 0 {
            for _ in 0..<min(1_000, remaining) { batch.append(monitor.task { 1 }) }
            remaining -= batch.count
            for task in batch { _ = await task.value }
            batch.removeAll(keepingCapacity: true)
        }
        let elapsed = cpuNanoseconds(CLOCK_MONOTONIC) - start
        let snapshot = monitor.snapshot()
        return "{\"profile\":\"\(Profile.name)\",\"tasks\":\(count),\"elapsed_ns\":\(elapsed),"
            + "\"created\":\(snapshot.created),\"live\":\(snapshot.live)}"
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

    static func procStatTicks() -> Int {
        let fd = open("/proc/self/stat", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return 0 }
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
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

/// Interleaved A/B spawn measurement: plain and monitored batches alternate within one process, so
/// both sides share every slow phase of the machine; the per-round ratios are then summarized.
@inline(never) func identity(_ value: Int) async -> Int { value }

final class OpHolder: Sendable {
    let op: @Sendable () async -> Int = { 1 }
    let anyOp: @Sendable @isolated(any) () async -> Int = { 1 }
}

final class Carrier: @unchecked Sendable {
    var next: Unmanaged<Carrier>?
    var start: UInt64 = 0
    let storage = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
}

/// Experiment: single spawner thread takes from `local`; finishing tasks push onto `remote` (CAS).
enum CarrierPool {
    nonisolated(unsafe) static var local: Unmanaged<Carrier>? = nil
    static let remote = Atomic<UInt>(0)
    static let counter = Atomic<Int>(0)

    @inline(__always)
    static func take() -> Carrier {
        if let head = local {
            local = head.takeUnretainedValue().next
            return head.takeRetainedValue()
        }
        let all = remote.exchange(0, ordering: .acquiring)
        if all != 0 {
            let head = Unmanaged<Carrier>.fromOpaque(UnsafeRawPointer(bitPattern: all)!)
            local = head.takeUnretainedValue().next
            return head.takeRetainedValue()
        }
        return Carrier()
    }

    @inline(__always)
    static func give(_ carrier: Carrier) {
        let node = Unmanaged.passRetained(carrier)
        let bits = UInt(bitPattern: node.toOpaque())
        var head = remote.load(ordering: .relaxed)
        while true {
            carrier.next = head == 0 ? nil : Unmanaged<Carrier>.fromOpaque(UnsafeRawPointer(bitPattern: head)!)
            let (done, now) = remote.compareExchange(expected: head, desired: bits, ordering: .releasing)
            if done { return }
            head = now
        }
    }

    @inline(__always)
    static func spawn<S: Sendable>(_ op: sending @escaping @isolated(any) () async -> S) -> Task<S, Never> {
        typealias F = @isolated(any) () async -> S
        counter.add(1, ordering: .relaxed)
        let carrier = take()
        carrier.storage.initializeMemory(as: F.self, to: op)
        return Task { [carrier] in
            let op = carrier.storage.assumingMemoryBound(to: F.self).move()
            give(carrier)
            let r = await op()
            counter.add(1, ordering: .relaxed)
            return r
        }
    }
}

enum ProcessEnv {
    static var pairs: [String] {
        (getenv("PAIRS").map { String(cString: $0) } ?? "plainTask:monitoredTask,plainDetached:monitoredDetached")
            .split(separator: ",").map(String.init)
    }
}

final class Holder: Sendable {
    let value = 1
    @inline(never) func run() async -> Int { value }
}

enum SpawnAB {
    static let monitor = TaskMonitor("spawn-ab")
    static let counter = Atomic<Int>(0)

    @inline(__always)
    static func spawnAny<S: Sendable>(_ op: sending @escaping @isolated(any) () async -> S) -> Task<S, Never> {
        counter.add(1, ordering: .relaxed)
        return Task {
            let r = await op()
            counter.add(1, ordering: .relaxed)
            return r
        }
    }

    @inline(__always)
    static func spawnPlain<S: Sendable>(_ op: @escaping @Sendable () async -> S) -> Task<S, Never> {
        counter.add(1, ordering: .relaxed)
        return Task {
            let r = await op()
            counter.add(1, ordering: .relaxed)
            return r
        }
    }

    enum Kind: String, CaseIterable {
        case plainTask, monitoredTask, plainDetached, monitoredDetached
        case namedTask, wrappedTask, countedTask, fusedAny, fusedPlain, singleRef, carried, indirectNoBox, anyNoBox, plainAwait, monitoredAwait, fusedAwait, plainAwaitDetached, monitoredAwaitDetached, plainNoCapture, plainTwoCaptures
    }

    static func batch(_ kind: Kind, _ count: Int, into tasks: inout [Task<Int, Never>]) async -> UInt64 {
        let start = Measure.cpuNanoseconds(CLOCK_MONOTONIC)
        switch kind {
        case .plainTask: for index in 0..<count { tasks.append(Task { index }) }
        case .monitoredTask: for index in 0..<count { tasks.append(monitor.task { index }) }
        case .plainDetached: for index in 0..<count { tasks.append(Task.detached { index }) }
        case .monitoredDetached: for index in 0..<count { tasks.append(monitor.detached { index }) }
        case .namedTask: for index in 0..<count { tasks.append(Task(name: nil) { index }) }
        case .wrappedTask:
            for index in 0..<count {
                let op: @Sendable () async -> Int = { index }
                tasks.append(Task { await op() })
            }
        case .fusedAny: for index in 0..<count { tasks.append(spawnAny { index }) }
        case .fusedPlain: for index in 0..<count { tasks.append(spawnPlain { index }) }
        case .singleRef:
            let holder = Holder()
            for _ in 0..<count { tasks.append(Task { await holder.run() }) }
        case .indirectNoBox:
            let holder = OpHolder()
            for _ in 0..<count { tasks.append(Task { [holder] in await holder.op() }) }
        case .anyNoBox:
            let holder = OpHolder()
            for _ in 0..<count { tasks.append(Task { [holder] in await holder.anyOp() }) }
        case .plainAwait: for index in 0..<count { tasks.append(Task { await identity(index) }) }
        case .monitoredAwait: for index in 0..<count { tasks.append(monitor.task { await identity(index) }) }
        case .fusedAwait: for index in 0..<count { tasks.append(spawnAny { await identity(index) }) }
        case .plainAwaitDetached: for index in 0..<count { tasks.append(Task.detached { await identity(index) }) }
        case .monitoredAwaitDetached: for index in 0..<count { tasks.append(monitor.detached { await identity(index) }) }
        case .plainNoCapture: for _ in 0..<count { tasks.append(Task { 1 }) }
        case .plainTwoCaptures:
            for index in 0..<count {
                let other = Holder()
                tasks.append(Task { index + other.value - 1 })
            }
        case .carried: for index in 0..<count { tasks.append(CarrierPool.spawn { index }) }
        case .countedTask:
            for index in 0..<count {
                counter.add(1, ordering: .relaxed)
                tasks.append(Task {
                    counter.add(1, ordering: .relaxed)
                    return index })
            }
        }
        var sum = 0
        for task in tasks { sum &+= await task.value }
        let elapsed = Measure.cpuNanoseconds(CLOCK_MONOTONIC) - start
        tasks.removeAll(keepingCapacity: true)
        precondition(sum == count * (count - 1) / 2 || kind == .singleRef || kind == .plainNoCapture || kind == .indirectNoBox || kind == .anyNoBox)
        return elapsed
    }

    static func run(rounds: Int, batchSize: Int) async -> String {
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(batchSize)
        // Warm-up: allocator, task pools, the monitor's shards.
        for kind in Kind.allCases { for _ in 0..<5 { _ = await batch(kind, batchSize, into: &tasks) } }
        let wanted = ProcessEnv.pairs
        let pairs: [(String, Kind, Kind)] = wanted.map { name in
            let parts = name.split(separator: ":").map(String.init)
            return (name, Kind(rawValue: parts[0])!, Kind(rawValue: parts[1])!)
        }
        var out: [String] = []
        for index in pairs.indices {
            let (name, plain, monitored) = pairs[index]
            var ratios: [Double] = []
            var plainTotal: UInt64 = 0
            var monitoredTotal: UInt64 = 0
            for round in 0..<rounds {
                let a: UInt64
                let b: UInt64
                if round % 2 == 0 {
                    a = await batch(plain, batchSize, into: &tasks)
                    b = await batch(monitored, batchSize, into: &tasks)
                } else {
                    b = await batch(monitored, batchSize, into: &tasks)
                    a = await batch(plain, batchSize, into: &tasks)
                }
                plainTotal += a
                monitoredTotal += b
                ratios.append(Double(b) / Double(a))
            }
            ratios.sort()
            let median = ratios[ratios.count / 2]
            let trimmed = ratios[(ratios.count / 10)..<(ratios.count - ratios.count / 10)]
            let trimmedMean = trimmed.reduce(0, +) / Double(trimmed.count)
            let tasksRun = Double(rounds * batchSize)
            out.append(
                "\"\(name)\":{\"median_ratio\":\(median),\"trimmed_mean_ratio\":\(trimmedMean),"
                    + "\"total_ratio\":\(Double(monitoredTotal) / Double(plainTotal)),"
                    + "\"plain_ns_per_task\":\(Double(plainTotal) / tasksRun),"
                    + "\"monitored_ns_per_task\":\(Double(monitoredTotal) / tasksRun)}")
        }
        return "{\"rounds\":\(rounds),\"batch\":\(batchSize)," + out.joined(separator: ",") + "}"
    }
}
