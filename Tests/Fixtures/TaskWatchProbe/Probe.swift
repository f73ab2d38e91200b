import Synchronization
import TaskWatch
import TaskWatchWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

struct ProbeError: Error {}

/// The probe's workloads. Every task is counted by the monitor named `probe`.
enum Probe {
    static let monitor = TaskMonitor("probe")

    /// N tasks of each kind, all awaited: the monitor's counts must then be exact.
    static func exact(_ count: Int) async -> String {
        let before = monitor.snapshot()
        let start = monotonicNanoseconds()
        for _ in 0..<count {
            _ = await monitor.task { 1 }.value
        }
        for _ in 0..<count {
            _ = try? await monitor.task { () throws -> Int in throw ProbeError() }.value
        }
        for _ in 0..<count {
            let task = monitor.task { () async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 1
            }
            task.cancel()
            _ = try? await task.value
        }
        await withTaskGroup(of: Int.self) { group in
            for index in 0..<count { group.addTask(monitor: monitor) { index } }
            for await _ in group {}
        }
        for _ in 0..<count {
            _ = await monitor.detached { 1 }.value
        }
        return json(monitor.snapshot(), minus: before, extra: ["elapsed_ns": monotonicNanoseconds() - start])
    }

    /// N tasks of each kind counted through tickets (success, throw, cancelled, detached, group child),
    /// all awaited: the counts must be exact, as for the wrapping spawns.
    static func tickets(_ count: Int) async -> String {
        let before = monitor.snapshot()
        let start = monotonicNanoseconds()
        for _ in 0..<count {
            let ticket = monitor.ticket()
            _ = await Task { await ticket.run { 1 } }.value
        }
        for _ in 0..<count {
            let ticket = monitor.ticket()
            _ = try? await Task { () async throws -> Int in
                try await ticket.run { () throws -> Int in throw ProbeError() }
            }
            .value
        }
        for _ in 0..<count {
            let ticket = monitor.ticket()
            let task = Task { () async throws -> Int in
                try await ticket.run {
                    try await Task.sleep(for: .seconds(30))
                    return 1
                }
            }
            task.cancel()
            _ = try? await task.value
        }
        for _ in 0..<count {
            let ticket = monitor.ticket()
            _ = await Task.detached { await ticket.run { 1 } }.value
        }
        await withTaskGroup(of: Int.self) { group in
            for index in 0..<count {
                let ticket = monitor.ticket()
                group.addTask { await ticket.run { index } }
            }
            for await _ in group {}
        }
        return json(monitor.snapshot(), minus: before, extra: ["elapsed_ns": monotonicNanoseconds() - start])
    }

    /// `spawners` concurrent spawners, each starting `tasksEach` tasks in batches and awaiting them.
    static func spawners(_ spawners: Int, tasksEach: Int) async -> String {
        let before = monitor.snapshot()
        let start = monotonicNanoseconds()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<spawners {
                group.addTask {
                    var remaining = tasksEach
                    var batch: [Task<Int, Never>] = []
                    batch.reserveCapacity(1_000)
                    while remaining > 0 {
                        for _ in 0..<min(1_000, remaining) { batch.append(monitor.task { 1 }) }
                        remaining -= batch.count
                        for task in batch { _ = await task.value }
                        batch.removeAll(keepingCapacity: true)
                    }
                }
            }
            for await _ in group {}
        }
        return json(monitor.snapshot(), minus: before, extra: ["elapsed_ns": monotonicNanoseconds() - start])
    }

    /// Called after the trigger line; starts `count` tasks that all stay alive until the burst's start
    /// plus `holdMilliseconds`. Prints the wall-clock start (CLOCK_REALTIME, nanoseconds) and the
    /// highest number of task bodies that were running at once, the burst's true height.
    static func burst(_ count: Int, holdMilliseconds: Int) async -> String {
        let gauge = ConcurrencyGauge()
        let wallStart = realtimeNanoseconds()
        let deadline = ContinuousClock.now + .milliseconds(holdMilliseconds)
        emit("{\"burst_start_realtime_ns\":\(wallStart)}")
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
        let spawned = realtimeNanoseconds()
        for task in tasks { await task.value }
        return json(
            monitor.snapshot(), minus: nil,
            extra: [
                "burst_start_realtime_ns": wallStart, "spawn_ns": spawned - wallStart,
                "true_height": gauge.highest.load(ordering: .relaxed),
                "end_realtime_ns": realtimeNanoseconds(),
            ])
    }

    /// `count` monitors `probe-m0`… (the default and the probe's own besides), each with one task run to
    /// completion: a report larger than the socket's buffer.
    static func monitors(_ count: Int) async -> String {
        for index in 0..<count { _ = await TaskMonitor("probe-m\(index)").task { 1 }.value }
        return "{\"monitors\":\(count)}"
    }

    /// A monitor named `length` bytes of `x` and one named "", each with one task run to completion; the
    /// series the process refused.
    static func names(_ length: Int) async -> String {
        _ = await TaskMonitor(String(repeating: "x", count: length)).task { 1 }.value
        _ = await TaskMonitor("").task { 1 }.value
        return "{\"names\":2,\"series_dropped\":\(TaskWatch.seriesDropped)}"
    }

    /// Forks `count` children one after another; each calls `exit(0)` at once, which runs the exit
    /// handlers, `TaskWatch`'s among them (inherited, with the reporter object but not its thread).
    /// The last child's exit status and the nanoseconds from its fork to its reaping.
    static func forkAndExit(_ count: Int) -> String {
        var status: Int32 = -1
        var elapsed: UInt64 = 0
        for _ in 0..<count {
            let start = monotonicNanoseconds()
            let child = fork()
            if child == 0 { exit(0) }
            guard child > 0 else { fail("TaskWatchProbe: fork failed") }
            var raw: Int32 = 0
            waitpid(child, &raw, 0)
            elapsed = monotonicNanoseconds() - start
            status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        }
        return "{\"child_status\":\(status),\"child_exit_ns\":\(elapsed)}"
    }

    /// A spawn-heavy workload: `count` tasks spawned and completed in batches of 1,000.
    static func spawnload(_ count: Int) async -> String {
        let before = monitor.snapshot()
        let start = monotonicNanoseconds()
        var remaining = count
        var batch: [Task<Int, Never>] = []
        batch.reserveCapacity(1_000)
        while remaining > 0 {
            for _ in 0..<min(1_000, remaining) { batch.append(monitor.task { 1 }) }
            remaining -= batch.count
            for task in batch { _ = await task.value }
            batch.removeAll(keepingCapacity: true)
        }
        return json(monitor.snapshot(), minus: before, extra: ["elapsed_ns": monotonicNanoseconds() - start])
    }

    /// Blocks until standard input reaches end of file or `maximumSeconds` pass, while the reporter
    /// thread goes on reporting.
    static func lingerUntilStdinEnds(maximumSeconds: Int) {
        let deadline = monotonicNanoseconds() + UInt64(maximumSeconds) * 1_000_000_000
        var buffer = [UInt8](repeating: 0, count: 256)
        while monotonicNanoseconds() < deadline {
            var poller = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { return }
            if poller.revents == 0 { continue }
            if buffer.withUnsafeMutableBytes({ read(0, $0.baseAddress, $0.count) }) <= 0 { return }
        }
    }

    static func json(
        _ snapshot: TaskMonitor.Snapshot, minus before: TaskMonitor.Snapshot?, extra: [String: UInt64]
    )
        -> String
    {
        var fields: [(String, UInt64)] = [
            ("profile_stress", Profile.name == "stress" ? 1 : 0),
            ("pid", UInt64(getpid())),
            ("created", snapshot.created - (before?.created ?? 0)),
            ("live", snapshot.live),
        ]
        for outcome in TaskOutcome.allCases {
            fields.append(("finished_\(outcome.label)", snapshot.finished(outcome) - (before?.finished(outcome) ?? 0)))
        }
        fields += extra.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// Prints one line and flushes it at once: the test reads the output file while the probe runs.
    static func emit(_ line: String) {
        print(line)
        fflush(nil)
    }

    /// Writes `message` to standard error and exits with status 2.
    static func fail(_ message: String) -> Never {
        let bytes = Array((message + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(2)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func realtimeNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// Counts task bodies running now and the most ever running at once.
final class ConcurrencyGauge: Sendable {
    let running = Atomic<UInt64>(0)
    let highest = Atomic<UInt64>(0)

    func enter() {
        let now = running.wrappingAdd(1, ordering: .relaxed).newValue
        var seen = highest.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, current) = highest.compareExchange(
                expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = current
        }
    }

    func leave() {
        running.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// Gauges reported through the low-level series API, for the `retire` workload.
final class ProbeItems: ReportSource {
    private let ids: Mutex<[SeriesID]>

    init(_ count: Int) {
        let descriptors = (0..<count).map {
            SeriesDescriptor(
                name: "probe_item", help: "A probe's item.", type: .gauge, labels: [Label("item", "\($0)")])
        }
        guard let ids = TaskWatch.declare(descriptors) else { Probe.fail("TaskWatchProbe: the items were refused") }
        self.ids = Mutex(ids)
        TaskWatch.register(source: self)
    }

    func collect(into report: inout ReportBuilder) {
        for id in ids.withLock({ $0 }) { report.value(id, 7) }
    }

    /// Retires every item but the first; they are reported no more.
    func retireAllButTheFirst() {
        let retired = ids.withLock { ids in
            defer { ids = Array(ids.prefix(1)) }
            return ids.dropFirst()
        }
        for id in retired { TaskWatch.retire(id) }
    }
}
