import CTaskWatchRuntime
import Foundation
import Synchronization
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatch

/// A reporter of its own (not the process-wide one) aimed at `daemon`.
func makeReporter(
    _ daemon: FakeDaemon, interval: Duration = .milliseconds(5), probe: Duration = .milliseconds(10)
) -> Reporter {
    var configuration = Configuration(environment: [:])
    configuration.socketPath = daemon.path
    configuration.processName = "reporter-test"
    configuration.interval = interval
    configuration.probeInterval = probe
    configuration.labels = [
        "region": "test", "pid": "forbidden", "process": "forbidden", "le": "forbidden", "quantile": "forbidden",
    ]
    return Reporter(configuration: configuration)
}

/// A source whose every collection burns `cost` of the reporter thread's CPU and reports a value that
/// changes each time (so the reporter never backs off): a report as dear as one with very many monitors.
private final class DearSource: ReportSource, @unchecked Sendable {
    // @unchecked: `collections` is atomic; the rest is immutable.
    let id: SeriesID
    let cost: UInt64
    let collections = Atomic<Int>(0)

    init(id: SeriesID, cost: Duration) {
        self.id = id
        self.cost = cost.nanoseconds
    }

    func collect(into report: inout ReportBuilder) {
        let start = MonotonicClock.threadCPU()
        while MonotonicClock.threadCPU() &- start < cost {}
        report.value(id, Double(collections.add(1, ordering: .relaxed).newValue))
    }
}

@Suite(.serialized) struct ReporterTests {
    /// A report that costs more than a twentieth of the interval in CPU stretches the report period, so
    /// the reporter stays near 5 % of a core: with 1,400 monitors all spawning, reports every 10 ms took
    /// a quarter of one. Here each report burns 2 ms: every 40 ms, not every 10 ms.
    @Test func aDearReportStretchesTheReportPeriod() throws {
        let daemon = FakeDaemon()
        let reporter = makeReporter(daemon, interval: .milliseconds(10), probe: .milliseconds(100))
        let descriptor = SeriesDescriptor(name: "dear_\(UUID().uuidString.prefix(8))", help: "", type: .gauge)
        let id = try #require(TaskWatch.declare([descriptor])?.first)
        defer { TaskWatch.retire(id) }
        let source = DearSource(id: id, cost: .milliseconds(2))
        TaskWatch.register(source: source)
        defer { TaskWatch.unregister(source: source) }
        reporter.start()
        defer { reporter.stop() }
        usleep(200_000)
        let before = source.collections.load(ordering: .relaxed)
        usleep(1_000_000)
        let reports = source.collections.load(ordering: .relaxed) - before
        print("reports in 1 s, each burning 2 ms of CPU, interval 10 ms: \(reports)")
        // About 25 (one per 40 ms) where the interval alone allows 100 (83 with the 2 ms each takes).
        #expect(reports >= 5 && reports <= 50)
    }

    @Test func helloComesFirstThenDeclarationsThenAbsoluteValues() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon)
        reporter.start()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("frames")
        for _ in 0..<10 { _ = await monitor.task { 1 }.value }

        let task = Label("task", monitor.name)
        let done = try await daemon.waitFor { daemon in
            guard let created = daemon.id("swift_tasks_created_total", [task]) else { return false }
            return daemon.values(of: created).last == 10
        }
        #if TASKWATCH_SILENT
            #expect(!done)
        #else
            #expect(done)
        #endif
        guard case .hello(let hello) = daemon.frames.first else {
            Issue.record("first frame is not hello")
            return
        }
        #expect(hello.process == "reporter-test")
        #expect(hello.labels == [Label("region", "test")])
        #expect(hello.claimedPID == UInt32(getpid()))
        #expect(hello.intervalNanoseconds == 5_000_000)

        let names = Set(daemon.declarations.map(\.name))
        for name in [
            "swift_tasks", "swift_tasks_created_total", "swift_tasks_finished_total", "swift_task_duration_seconds",
            "swift_executor_jobs_enqueued_total", "swift_executor_lag_seconds", "swift_process_heap_allocated_bytes",
            "swift_process_heap_free_bytes", "swift_taskwatch_reports_dropped_total",
            "swift_taskwatch_series_dropped_total",
        ] {
            #expect(names.contains(name), "\(name) not declared")
        }
        for declaration in daemon.declarations {
            #expect(!declaration.labels.contains { $0.name == "process" || $0.name == "pid" })
            #expect(Names.isValidMetricName(declaration.name))
        }
        // Every id a value refers to was declared before it.
        var declared = Set<UInt32>()
        for frame in daemon.frames {
            switch frame {
            case .declare(let list): declared.formUnion(list.map(\.id))
            case .values(let list): #expect(list.allSatisfy { declared.contains($0.id) })
            case .histograms(let list): #expect(list.allSatisfy { declared.contains($0.id) })
            case .peaks(let list): #expect(list.allSatisfy { declared.contains($0.id) })
            default: break
            }
        }
        #if !TASKWATCH_SILENT
            let finished = try #require(daemon.id("swift_tasks_finished_total", [task, Label("outcome", "success")]))
            try await Task.sleep(for: .milliseconds(30))
            try daemon.drain()
            #expect(daemon.values(of: finished).last == 10)
            let live = try #require(daemon.id("swift_tasks", [task]))
            #expect(daemon.values(of: live).last == 0)
            let created = daemon.values(of: daemon.id("swift_tasks_created_total", [task])!)
            #expect(zip(created, created.dropFirst()).allSatisfy { $0 <= $1 }, "values are absolute, never deltas")
            let heap = try #require(daemon.id("swift_process_heap_allocated_bytes"))
            #expect((daemon.values(of: heap).last ?? 0) > 0)
        #endif
    }

    @Test func absentDaemonDropsReportsThenReconnectsAndResendsEverything() async throws {
        let daemon = FakeDaemon()
        let reporter = makeReporter(daemon)
        let clock = ContinuousClock()
        let startTime = clock.measure { reporter.start() }
        defer { reporter.stop() }
        // Loose: start() never waits on the socket, so only a starved machine takes more than a moment.
        #expect(startTime < .seconds(1))
        let monitor = uniqueMonitor("absent")
        for _ in 0..<100 { monitor.task {} }
        // Polled, not slept: a loaded machine can starve the reporter thread for a while.
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) >= 5 })
        let dropped = reporter.reportsDropped.load(ordering: .relaxed)
        #expect(reporter.connections.load(ordering: .relaxed) == 0)

        daemon.listen()
        let task = Label("task", monitor.name)
        let connected = try await daemon.waitFor { daemon in
            guard let created = daemon.id("swift_tasks_created_total", [task]) else { return false }
            return !daemon.values(of: created).isEmpty
        }
        #expect(connected)
        #expect(daemon.hellos.count == 1)
        let droppedID = try #require(daemon.id("swift_taskwatch_reports_dropped_total"))
        #expect((daemon.values(of: droppedID).last ?? 0) >= Double(dropped))
        #if !TASKWATCH_SILENT
            #expect(daemon.values(of: daemon.id("swift_tasks_created_total", [task])!).last == 100)
        #endif

        // The daemon restarts: the next connection gets hello, every declaration and every value again.
        let declaredBefore = Set(daemon.declarations.map(\.id))
        daemon.stop()
        daemon.clearFrames()
        try await Task.sleep(for: .milliseconds(50))
        daemon.listen()
        let reconnected = try await daemon.waitFor { daemon in
            guard let created = daemon.id("swift_tasks_created_total", [task]) else { return false }
            return !daemon.values(of: created).isEmpty
        }
        #expect(reconnected)
        #expect(reporter.connections.load(ordering: .relaxed) == 2)
        guard case .hello = daemon.frames.first else {
            Issue.record("the reconnection did not start with hello")
            return
        }
        #expect(declaredBefore.isSubset(of: Set(daemon.declarations.map(\.id))))
    }

    @Test func aDaemonThatRefusesEveryConnectionIsRetriedWithABackoff() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .milliseconds(1))
        reporter.start()
        defer { reporter.stop() }
        // Declarations keep coming, so reconnections have hello and declarations to send when the
        // connection breaks under them (which used to trap in the reporter thread).
        var refused = 0
        var declared: SeriesID?
        let probe = SeriesDescriptor(name: "refused_probe", help: "", type: .gauge)
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(1_500)
        while clock.now < deadline {
            refused += daemon.refusePending()
            // Retired and declared again: the same id, queued again at the end of the table.
            if let declared { TaskWatch.retire(declared) }
            declared = TaskWatch.declare([probe])?.first
            try await Task.sleep(for: .milliseconds(1))
        }
        refused += daemon.refusePending()
        if let declared { TaskWatch.retire(declared) }
        // Closed at once every time: the backoff doubles from 10 ms (10 + 20 + ... + 640 ms is 1.27 s),
        // where reconnecting at every 1 ms report would give hundreds.
        print("refused \(refused) connections in 1.5 s")
        #expect(refused >= 2)
        #expect(refused <= 12)
        #expect(reporter.connections.load(ordering: .relaxed) <= 12)
        // The reporter thread is alive: it keeps counting reports it cannot send.
        let dropped = reporter.reportsDropped.load(ordering: .relaxed)
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) > dropped })
    }

    @Test func anOversizedProcessNameAndLabelsStillMakeAValidHello() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = daemon.path
        configuration.interval = .milliseconds(5)
        configuration.processName = String(repeating: "é", count: Wire.maxTextLength)
        configuration.labels = Dictionary(
            uniqueKeysWithValues: (0..<40).map { ("label\($0)", String(repeating: "v", count: 5_000)) })
        configuration.labels[String(repeating: "n", count: Wire.maxNameLength + 1)] = "x"
        let reporter = Reporter(configuration: configuration)
        reporter.start()
        defer { reporter.stop() }
        // `drain` decodes every frame and throws on one the daemon would refuse.
        let reported = try await daemon.waitFor { daemon in
            !daemon.hellos.isEmpty && daemon.frames.contains { if case .values = $0 { true } else { false } }
        }
        #expect(reported)
        let hello = try #require(daemon.hellos.first)
        #expect(hello.process.utf8.count <= Wire.maxTextLength)
        #expect(hello.process.allSatisfy { $0 == "é" })
        // As many 4 KiB labels as fit in `Wire.maxHelloLabelBytes` (8 KiB of names and values): one of
        // 4,102 bytes ("label0" and the value cut to 4 KiB), not two.
        #expect(hello.labels.count == 1)
        #expect(Wire.helloLabelBytes(hello.labels) <= Wire.maxHelloLabelBytes)
        #expect(FrameEncoder.hello(hello).count <= Wire.maxFrameSize)
        #expect(hello.labels.allSatisfy { $0.name.utf8.count <= Wire.maxNameLength })
        #expect(hello.labels.allSatisfy { $0.value.utf8.count == Wire.maxTextLength })
    }

    /// A reporter every millisecond, accepted by a daemon that then never reads: the socket buffer fills
    /// up within a few hundred reports. The caller stops the reporter.
    func reporterOfAStalledDaemon() async throws -> (FakeDaemon, Reporter) {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .milliseconds(1))
        reporter.start()
        #expect(try await waitUntil { daemon.accept() })
        return (daemon, reporter)
    }

    @Test func aDaemonThatNeverReadsNeverBlocksSpawning() async throws {
        let (_, reporter) = try await reporterOfAStalledDaemon()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("stalled")
        let clock = ContinuousClock()
        var slowest = Duration.zero
        let deadline = clock.now + .seconds(1)
        var spawned = 0
        while clock.now < deadline {
            let elapsed = clock.measure { for _ in 0..<100 { monitor.detached {} } }
            slowest = max(slowest, elapsed)
            spawned += 100
            await Task.yield()
        }
        let dropped = reporter.reportsDropped.load(ordering: .relaxed)
        print("spawned \(spawned) tasks with a stalled daemon; slowest 100 spawns: \(slowest); dropped \(dropped)")
        #expect(dropped > 0)
        #expect(slowest < .milliseconds(500))
        // The reporter thread is alive: it keeps counting drops.
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) > dropped })
    }

    /// A report that meets a full socket at its first frame is dropped and counted at once: the daemon
    /// has not even drained the reports before it (it is stopped, or far behind). Only a report already
    /// partly sent waits for room, so that one larger than the socket's buffer still arrives whole. Every
    /// report used to wait up to `Reporter.roomWait` (20 ms) in `poll` for a stopped daemon, stalling
    /// sampling and probing with it.
    @Test func aReportThatMeetsAFullSocketIsDroppedWithoutWaitingForRoom() throws {
        let daemon = FakeDaemon()
        daemon.listen()
        // No thread: the test makes the reports, and the daemon never reads them.
        let reporter = makeReporter(daemon)
        defer { reporter.stop() }
        reporter.report(now: MonotonicClock.now())
        #expect(daemon.accept())
        var reports = 1
        while reporter.reportsDropped.load(ordering: .relaxed) == 0, reports < 100_000 {
            reporter.report(now: MonotonicClock.now())
            reports += 1
        }
        let dropped = reporter.reportsDropped.load(ordering: .relaxed)
        #expect(dropped == 1, "the socket never filled")
        // A frame smaller than the one that met the full socket may still fit once; then the socket is
        // full for every frame.
        reporter.report(now: MonotonicClock.now())
        let waits = reporter.roomWaits
        for _ in 0..<10 { reporter.report(now: MonotonicClock.now()) }
        print("socket full after \(reports) reports; room waits in the 10 reports after: \(reporter.roomWaits - waits)")
        #expect(reporter.reportsDropped.load(ordering: .relaxed) == dropped + 11)
        #expect(reporter.roomWaits == waits, "a report that could send nothing waited for room")
    }

    /// A daemon that does not read while the process keeps making and retiring series: the changes
    /// wait in the process-wide table, whose backlog is bounded, not in the reporter's queue; once the
    /// daemon reads again, the reporter, too far behind, starts over on a new connection.
    @Test func aStalledDaemonAndSeriesThatComeAndGoKeepTheClientBounded() async throws {
        let (daemon, reporter) = try await reporterOfAStalledDaemon()
        defer { reporter.stop() }
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) > 0 }, "the socket filled")
        let table = SeriesTable.shared
        let name = "churned_\(UUID().uuidString.prefix(8))"
        for round in 0..<(3 * table.maxBacklog) {
            let descriptor = SeriesDescriptor(
                name: name, help: "", type: .gauge, labels: [Label("request", "\(round)")])
            if let id = TaskWatch.declare([descriptor])?.first { TaskWatch.retire(id) }
        }
        #expect(table.footprint.changes <= 2 * table.maxBacklog)
        #expect(table.footprint.retired <= table.limit)
        // The daemon reads again: the reporter finds itself too far behind and starts over.
        #expect(try await daemon.waitFor { $0.connections >= 2 })
        #expect(
            try await daemon.waitFor { fake in
                fake.frames.filter { if case .hello = $0 { return true } else { return false } }.count >= 2
            })
    }

    /// Every report started a new peak window, sent or not: a burst while the daemon did not read was
    /// gone by the time it read again (`swift_tasks_peak` 0 after a 2,000-task burst). A peak now keeps
    /// its maximum until a report carries it.
    @Test func aBurstWhileTheDaemonDoesNotReadShowsOnceItReadsAgain() async throws {
        let (daemon, reporter) = try await reporterOfAStalledDaemon()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("unread_burst")
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) > 0 }, "the socket filled")
        let burst = 2_000
        let tasks = (0..<burst).map { _ in monitor.task { try? await Task.sleep(for: .milliseconds(100)) } }
        for task in tasks { await task.value }
        // Reports dropped after the burst ended: each of them used to end the burst's window.
        let dropped = reporter.reportsDropped.load(ordering: .relaxed)
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) >= dropped + 20 })
        let task = Label("task", monitor.name)
        let seen = try await daemon.waitFor { daemon in
            guard let live = daemon.id("swift_tasks", [task]), let peak = daemon.peaks(of: live).max() else {
                return false
            }
            #if TASKWATCH_SILENT
                return true
            #else
                return peak >= Double(burst)
            #endif
        }
        #expect(seen, "the burst's peak never reached the daemon")
    }

    @Test func peaksCatchAShortBurst() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .milliseconds(1))
        reporter.start()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("burst")
        let task = Label("task", monitor.name)
        #expect(try await daemon.waitFor { $0.id("swift_tasks", [task]) != nil })
        let burst = 2_000
        let tasks = (0..<burst).map { _ in monitor.task { try? await Task.sleep(for: .milliseconds(200)) } }
        for task in tasks { await task.value }
        try await Task.sleep(for: .milliseconds(20))
        try daemon.drain()
        let live = try #require(daemon.id("swift_tasks", [task]))
        let peak = daemon.peaks(of: live).max() ?? 0
        print("burst of \(burst): highest peak sample \(peak)")
        #if TASKWATCH_SILENT
            #expect(peak == 0)
        #else
            #expect(peak >= 0.95 * Double(burst))
            #expect(peak <= Double(burst))
        #endif
    }

    /// A monitor made between reports, as a `static let` is at its first spawn, is sampled from its first
    /// burst on. Sampling walked the monitors of the last report, so a burst that ended before the next
    /// one was missed: `swift_tasks_peak` 0 after 100 tasks alive together.
    @Test func aMonitorMadeBetweenReportsIsSampledFromItsFirstBurst() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        // Samples 250 ms apart, and the next report two seconds after the one `flush` asks for: the burst
        // below, 800 ms long, has ended by then, so only the samples between reports can see it.
        let reporter = makeReporter(daemon, interval: .seconds(2), probe: .seconds(2))
        reporter.start()
        defer { reporter.stop() }
        #expect(await Task.detached { reporter.flush(timeout: .seconds(5)) }.value)
        let monitor = uniqueMonitor("late")
        let burst = 100
        let tasks = (0..<burst).map { _ in monitor.task { try? await Task.sleep(for: .milliseconds(800)) } }
        for task in tasks { await task.value }
        let task = Label("task", monitor.name)
        var peak: Double?
        #expect(
            try await daemon.waitFor(timeout: .seconds(10)) { daemon in
                guard let live = daemon.id("swift_tasks", [task]) else { return false }
                peak = daemon.peaks(of: live).max()
                return peak != nil
            })
        print("a monitor made between reports: first peak sample \(peak ?? -1) of a burst of \(burst)")
        #if TASKWATCH_SILENT
            #expect(peak == 0)
        #else
            #expect(peak == Double(burst))
        #endif
    }

    @Test func executorLagShowsABlockedPool() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, probe: .milliseconds(10))
        reporter.start()
        defer { reporter.stop() }
        try await Task.sleep(for: .milliseconds(50))
        let threads = ProcessInfo.processInfo.activeProcessorCount
        let blockers = (0..<threads).map { _ in Task.detached { _ = usleep(200_000) } }
        for blocker in blockers { await blocker.value }
        try await Task.sleep(for: .milliseconds(50))
        let lag = reporter.probe.histogram.snapshot()
        let slowIndex = HistogramBounds.executorLag.firstIndex(of: 0.1)! + 1
        let slow = lag.buckets[slowIndex...].reduce(0, +)
        print("lag histogram: \(lag.buckets), sum \(lag.sum)s")
        #expect(slow >= 1, "no probe waited more than 100 ms")
        #expect(lag.sum >= 0.15)
        // And the daemon sees it.
        #expect(
            try await daemon.waitFor { daemon in
                guard let id = daemon.id("swift_executor_lag_seconds") else { return false }
                return (daemon.histograms(of: id).last?.sum ?? 0) >= 0.15
            })
    }

    /// SwiftExecutorStalled (prometheus/alerts.yml) reads a probe count that stops while the client still
    /// reports as a pool with no free thread. Both halves of that hold here: an idle process keeps
    /// probing (backed off to one report a second, a probe with each), and while every cooperative
    /// thread is blocked the count stands still and the reports go on.
    @Test func anIdleProcessKeepsProbingAndABlockedPoolFreezesTheCountWhileReportsGoOn() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .milliseconds(5), probe: .milliseconds(10))
        reporter.start()
        defer { reporter.stop() }
        #expect(try await daemon.waitFor { $0.id("swift_executor_lag_seconds") != nil })

        try await Task.sleep(for: .milliseconds(500))
        let idleStart = reporter.probe.histogram.count
        try await Task.sleep(for: .milliseconds(2_500))
        let idleProbes = reporter.probe.histogram.count - idleStart
        print("probes in 2.5 s of idleness: \(idleProbes)")
        #if !TASKWATCH_SILENT
            #expect(idleProbes >= 2, "an idle process stopped probing: the alert would take it for a blocked pool")
        #endif

        // Every pool thread blocked. The first blocker measures, from inside the block, once all are in.
        let threads = ProcessInfo.processInfo.activeProcessorCount
        final class Gate: Sendable {
            let inside = Atomic<Int>(0)
            let measured = Atomic<Bool>(false)
        }
        let gate = Gate()
        let blockers = (0..<threads).map { index in
            Task.detached { () -> (probes: UInt64, reports: UInt64)? in
                gate.inside.add(1, ordering: .sequentiallyConsistent)
                guard index == 0 else {
                    while !gate.measured.load(ordering: .sequentiallyConsistent) { usleep(1_000) }
                    return nil
                }
                while gate.inside.load(ordering: .sequentiallyConsistent) < threads { usleep(1_000) }
                usleep(100_000)
                let probes = reporter.probe.histogram.count
                // Sent or dropped: nothing reads the fake daemon meanwhile, and its socket may fill.
                let reports =
                    reporter.reportsSent.load(ordering: .relaxed) + reporter.reportsDropped.load(ordering: .relaxed)
                usleep(1_500_000)
                let result = (
                    probes: reporter.probe.histogram.count - probes,
                    reports: reporter.reportsSent.load(ordering: .relaxed)
                        + reporter.reportsDropped.load(ordering: .relaxed) - reports
                )
                gate.measured.store(true, ordering: .sequentiallyConsistent)
                return result
            }
        }
        var blocked: (probes: UInt64, reports: UInt64)?
        for blocker in blockers { if let result = await blocker.value { blocked = result } }
        let during = try #require(blocked)
        print("while blocked for 1.5 s: \(during.probes) probes, \(during.reports) reports")
        #expect(during.probes == 0, "a probe ran with every cooperative thread blocked")
        #if !TASKWATCH_SILENT
            #expect(during.reports >= 1, "the reporter stopped while the pool was blocked")
        #endif
    }

    @Test func theEnqueueHookCountsJobs() async throws {
        let daemon = FakeDaemon()
        let reporter = makeReporter(daemon)
        reporter.start()
        defer { reporter.stop() }
        let before = tw_enqueue_count()
        for _ in 0..<1_000 { await Task.detached {}.value }
        #expect(tw_enqueue_count() - before >= 1_000)
    }

    @Test func actorIsolatedSpawnsAddNoExecutorHop() async throws {
        await ProcessWide.exclusive {
            let daemon = FakeDaemon()
            let reporter = makeReporter(daemon, interval: .seconds(10), probe: .seconds(10))
            reporter.start()
            defer { reporter.stop() }
            let monitor = uniqueMonitor("hops")
            let counter = Counter()
            let rounds = 2_000
            let before = tw_enqueue_count()
            await counter.spawnIncrements(monitor, count: rounds)
            let monitored = tw_enqueue_count() - before
            let plainBefore = tw_enqueue_count()
            await counter.spawnPlain(count: rounds)
            let plain = tw_enqueue_count() - plainBefore
            print("global enqueues for \(rounds) actor-isolated spawns: monitored \(monitored), plain \(plain)")
            // Without a hop a spawn costs at most two global enqueues (the task, then the actor); an extra
            // hop makes it three. The plain count can fall below two per spawn when the actor is already
            // running and drains jobs in place, so it only raises the bound, never lowers it.
            let noHopCeiling = max(Double(plain), Double(2 * rounds))
            #expect(Double(monitored) < noHopCeiling + Double(rounds) / 2)
            let ticketBefore = tw_enqueue_count()
            await counter.runUnderTickets(monitor, count: rounds)
            let ticketed = tw_enqueue_count() - ticketBefore
            print("global enqueues for \(rounds) actor-isolated spawns under tickets: \(ticketed)")
            #expect(Double(ticketed) < noHopCeiling + Double(rounds) / 2)
        }
    }

    @Test func anIdleReporterBacksOffAndWakesAtTheFirstSpawn() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .milliseconds(5))
        reporter.start()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("idle")
        let task = Label("task", monitor.name)
        #expect(try await daemon.waitFor { $0.id("swift_tasks_created_total", [task]) != nil })
        // Nothing happens: after a few quiet reports the period grows towards a second.
        try await Task.sleep(for: .milliseconds(300))
        let before = reporter.reportsSent.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(500))
        let quiet = reporter.reportsSent.load(ordering: .relaxed) - before
        print("reports in 500 ms of idleness at a 5 ms interval: \(quiet)")
        #if !TASKWATCH_SILENT
            #expect(quiet < 20, "an idle reporter kept a 5 ms cadence")
        #endif

        // The first spawn wakes it: the report follows within about one interval, not a second.
        let created = try #require(daemon.id("swift_tasks_created_total", [task]))
        let clock = ContinuousClock()
        let spawned = clock.now
        _ = await monitor.task { 1 }.value
        let seen = try await daemon.waitFor(timeout: .seconds(5)) { $0.values(of: created).last == 1 }
        let latency = clock.now - spawned
        print("first report after idleness: \(latency) after the spawn")
        #if !TASKWATCH_SILENT
            #expect(seen)
            #expect(latency < .milliseconds(250))
        #endif
    }

    /// With no daemon, an idle process backs off too: it does not wake every interval for a daemon that
    /// is not there (it did, 0.63 % of a core at 10 ms). A daemon that appears later still gets
    /// everything, within the one-second ceiling and the connect backoff.
    @Test func anIdleReporterWithoutADaemonBacksOffAndStillConnects() async throws {
        let daemon = FakeDaemon()
        let reporter = makeReporter(daemon, interval: .milliseconds(5))
        reporter.start()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("idle-absent")
        let task = Label("task", monitor.name)
        #expect(try await waitUntil { reporter.reportsDropped.load(ordering: .relaxed) >= 1 })
        try await Task.sleep(for: .milliseconds(300))
        let before = reporter.reportsDropped.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(500))
        let attempts = reporter.reportsDropped.load(ordering: .relaxed) - before
        print("reports dropped in 500 ms of idleness without a daemon at a 5 ms interval: \(attempts)")
        #if !TASKWATCH_SILENT
            #expect(attempts < 20, "an idle reporter kept a 5 ms cadence for an absent daemon")
        #endif

        daemon.listen()
        #expect(try await daemon.waitFor(timeout: .seconds(10)) { $0.id("swift_tasks_created_total", [task]) != nil })
    }

    /// `flush` sends the counts at once, however long the interval: a process about to exit leaves the
    /// daemon its final counts, not those of a report up to an interval older (or none at all).
    @Test func flushSendsTheCountsAtOnceAndSaysWhetherTheyWent() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .seconds(3_600), probe: .seconds(3_600))
        reporter.start()
        defer { reporter.stop() }
        let monitor = uniqueMonitor("flush")
        for _ in 0..<5 { _ = await monitor.task { 1 }.value }
        // Long enough for the thread to be asleep until its next sample: a quarter of the interval, were
        // that not capped at 250 ms.
        try await Task.sleep(for: .milliseconds(400))
        let clock = ContinuousClock()
        let started = clock.now
        let sent = await Task.detached { reporter.flush(timeout: .seconds(5)) }.value
        let latency = clock.now - started
        print("flush with a one-hour interval: \(latency)")
        #if !TASKWATCH_SILENT
            #expect(sent)
            #expect(latency < .seconds(1), "a flush waited for the sample period")
            try daemon.drain()
            let created = try #require(daemon.id("swift_tasks_created_total", [Label("task", monitor.name)]))
            #expect(daemon.values(of: created).last == 5)
        #endif

        // Quiet by now (the report above changed nothing since): woken at once, and again it goes out.
        try await Task.sleep(for: .milliseconds(300))
        _ = await monitor.task { 1 }.value
        #expect(await Task.detached { reporter.flush(timeout: .seconds(5)) }.value)
        #if !TASKWATCH_SILENT
            try daemon.drain()
            let createdAgain = try #require(daemon.id("swift_tasks_created_total", [Label("task", monitor.name)]))
            #expect(daemon.values(of: createdAgain).last == 6)
        #endif

        // No daemon: the report is tried and dropped, and flush says so without waiting out its timeout.
        daemon.stop()
        let absent = clock.now
        let dropped = await Task.detached { reporter.flush(timeout: .seconds(5)) }.value
        #expect(!dropped)
        #expect(clock.now - absent < .seconds(2))
    }

    @Test func theReporterThreadIsNamed() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon)
        reporter.start()
        defer { reporter.stop() }
        let found = try await waitUntil {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.contains { tid in
                let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)
                return comm?.trimmingCharacters(in: .whitespacesAndNewlines) == Reporter.threadName
            }
        }
        #expect(found)
    }

    /// An app that blocks SIGUSR1 or SIGTERM in its threads and takes it with `sigwait` or a signalfd:
    /// the reporter thread blocked nothing, so the kernel gave it the signal, whose default action
    /// killed the process (exit status 138). Its mask now blocks all but the faults.
    @Test func theReporterThreadBlocksTheAppsSignalsButNotFaults() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon)
        var before = sigset_t()
        var after = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &before)
        reporter.start()
        pthread_sigmask(SIG_SETMASK, nil, &after)
        defer { reporter.stop() }
        // The caller's own mask is left as it was.
        #expect((1..<65).allSatisfy { sigismember(&before, Int32($0)) == sigismember(&after, Int32($0)) })
        var masks: [UInt64] = []
        _ = try await waitUntil {
            masks = reporterThreadMasks()
            return !masks.isEmpty
        }
        #expect(!masks.isEmpty, "no reporter thread found")
        func bit(_ signal: Int32) -> UInt64 { 1 << UInt64(signal - 1) }
        for mask in masks {
            for signal in [SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGALRM] {
                #expect(mask & bit(signal) != 0, "signal \(signal) not blocked: mask \(String(mask, radix: 16))")
            }
            for signal in [SIGSEGV, SIGBUS, SIGFPE, SIGILL] {
                #expect(mask & bit(signal) == 0, "fault \(signal) blocked: mask \(String(mask, radix: 16))")
            }
        }
    }

    /// A child forked without exec inherited the connection, and held it open after this process ended:
    /// the daemon showed the process connected until the child exited. The child now closes its copy.
    @Test func aForkedChildDoesNotHoldTheConnectionOpen() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon, interval: .milliseconds(5))
        reporter.start()
        #expect(try await daemon.waitFor { !$0.declarations.isEmpty })
        let child = fork()
        if child == 0 {
            // Only async-signal-safe calls in the child of a multithreaded process.
            usleep(5_000_000)
            _exit(0)
        }
        #expect(child > 0)
        defer {
            kill(child, SIGKILL)
            waitpid(child, nil, 0)
        }
        reporter.stop()
        #expect(try await daemon.waitFor(timeout: .seconds(3)) { $0.clientClosed }, "the child holds it open")
    }

    /// A series retired while the first report on a connection is collected: the new connection must
    /// not get its value, since it starts over from the live declarations (it used to be collected before
    /// connecting, so the values frame named a series the connection never declared).
    @Test func aSeriesRetiredWhileAReportIsCollectedIsNotReported() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        // Not started: the test drives the reports itself, on its own thread.
        let reporter = makeReporter(daemon)
        defer { reporter.stop() }
        let descriptor = SeriesDescriptor(name: "retired_\(UUID().uuidString.prefix(8))", help: "", type: .gauge)
        let id = try #require(TaskWatch.declare([descriptor])?.first)
        let source = TestSource(collectingOn: pthread_self())
        source.add(id, retireOnCollect: true)
        TaskWatch.register(source: source)
        defer { TaskWatch.unregister(source: source) }

        reporter.report(now: MonotonicClock.now())
        try daemon.drain()
        #expect(daemon.hellos.count == 1)
        #expect(source.ids.isEmpty, "the source retired its series")
        #expect(daemon.frames.contains { if case .values = $0 { true } else { false } })
        #expect(daemon.idsNotLive == [])
        #expect(daemon.values(of: id.rawValue).isEmpty)
    }

    /// The socket is full with a declaration queued, and a series is declared: the next report cannot
    /// send the declaration, so it must not send values either, even when the daemon reads in between
    /// (it used to send them, naming the new series, which the connection did not know yet).
    @Test func valuesNeverOvertakeTheDeclarationsOfTheirSeries() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon)
        defer { reporter.stop() }
        let source = TestSource(collectingOn: pthread_self())
        TaskWatch.register(source: source)
        defer {
            TaskWatch.unregister(source: source)
            for id in source.ids { TaskWatch.retire(id) }
        }
        let name = "overtaken_\(UUID().uuidString.prefix(8))"
        var round = 0
        func declareOne() throws -> SeriesID {
            let descriptor = SeriesDescriptor(name: name, help: "", type: .gauge, labels: [Label("round", "\(round)")])
            round += 1
            let id = try #require(TaskWatch.declare([descriptor])?.first)
            source.add(id)
            return id
        }
        reporter.report(now: MonotonicClock.now())
        #expect(daemon.accept())
        // The daemon does not read: a series a report, until one report could not send its declaration.
        while !reporter.hasPendingControl, round < 100_000 {
            _ = try declareOne()
            reporter.report(now: MonotonicClock.now())
        }
        #expect(reporter.hasPendingControl, "the socket never filled")
        let last = try declareOne()
        // The daemon reads everything just after the report found the socket full.
        reporter.afterControlFlush = { try? daemon.drain() }
        reporter.report(now: MonotonicClock.now())
        reporter.afterControlFlush = nil
        reporter.report(now: MonotonicClock.now())
        try daemon.drain()
        #expect(daemon.idsNotLive == [])
        #expect(daemon.values(of: last.rawValue) == [0])
    }

    @Test func aReporterWhoseThreadCannotBeCreatedIsNotKept() async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = daemon.path
        // A stack larger than the address space: `pthread_create` fails.
        let doomed = { Reporter(configuration: configuration, stackSize: 1 << 50) }
        let unstarted = doomed()
        #expect(!unstarted.start())
        unstarted.stop()

        let slot = Mutex<Reporter?>(nil)
        let failed = Reporter.start(into: slot, doomed)
        #expect(!failed)
        #expect(slot.withLock { $0 == nil }, "kept with no thread: isRunning would say true")
        // A later start tries again.
        let retried = Reporter.start(into: slot) { makeReporter(daemon) }
        #expect(retried)
        let started = try #require(slot.withLock { $0 })
        defer { started.stop() }
        #expect(try await daemon.waitFor { !$0.hellos.isEmpty })
        let again = Reporter.start(into: slot) { makeReporter(daemon) }
        #expect(!again)
    }

    /// `TaskWatch.shutdown` has the reporter thread send a goodbye and close the connection, so that the
    /// daemon drops the process's series at once (a daemon keeps a process that went without one through
    /// its grace period, as a crash); the reporter is then gone, and `start` starts another.
    @Test func shutdownSaysGoodbyeAndStartStartsAgain() async throws {
        TaskWatch.shutdown(timeout: .seconds(5))
        #expect(!TaskWatch.isRunning)
        let daemon = FakeDaemon()
        daemon.listen()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = daemon.path
        configuration.interval = .milliseconds(5)
        let started = TaskWatch.start(configuration)
        #if TASKWATCH_SILENT
            #expect(!started && !TaskWatch.shutdown(timeout: .seconds(1)))
        #else
            #expect(started)
            #expect(try await daemon.waitFor { !$0.declarations.isEmpty })
            #expect(await Task.detached { TaskWatch.shutdown(timeout: .seconds(5)) }.value)
            #expect(!TaskWatch.isRunning)
            #expect(try await daemon.waitFor { $0.clientClosed })
            #expect(daemon.frames.last == .goodbye)
            #expect(!TaskWatch.shutdown(timeout: .seconds(1)), "nothing left to shut down")

            // Quiet this time: woken, it says goodbye as promptly.
            #expect(TaskWatch.start(configuration))
            #expect(try await daemon.waitFor { $0.connections == 2 && $0.hellos.count == 2 })
            try await Task.sleep(for: .milliseconds(300))
            daemon.clearFrames()
            #expect(await Task.detached { TaskWatch.shutdown(timeout: .seconds(5)) }.value)
            #expect(try await daemon.waitFor { $0.clientClosed })
            #expect(daemon.frames.last == .goodbye)

            // No daemon: nothing to say goodbye to, and no wait for it.
            daemon.stop()
            #expect(TaskWatch.start(configuration))
            #expect(!(await Task.detached { TaskWatch.shutdown(timeout: .seconds(5)) }.value))
            #expect(!TaskWatch.isRunning)
        #endif
    }

    /// With a long interval a busy reporter sub-samples every 250 ms; a stop must not wait that out, or
    /// the exit handler's 100 ms pass with no goodbye (a review: every exit after recent tasks, with
    /// `TASKWATCH_INTERVAL=1s`, looked like a crash).
    @Test func aSubsamplingReporterSaysGoodbyeWithinTheExitHandlersBound() async throws {
        TaskWatch.shutdown(timeout: .seconds(5))
        let daemon = FakeDaemon()
        daemon.listen()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = daemon.path
        configuration.interval = .seconds(2)
        let started = TaskWatch.start(configuration)
        #if TASKWATCH_SILENT
            #expect(!started)
        #else
            #expect(started)
            #expect(try await daemon.waitFor { !$0.declarations.isEmpty })
            let monitor = TaskMonitor("goodbye_subsampling")
            for round in 0..<5 {
                // Spawns keep the reporter sub-sampling (its sleeps last a quarter of the interval, at most
                // 250 ms); the stop comes in the middle of one.
                for _ in 0..<100 { _ = await monitor.task { round }.value }
                try await Task.sleep(for: .milliseconds(60))
                if round < 4 { continue }
                #expect(await Task.detached { TaskWatch.shutdown(timeout: .milliseconds(100)) }.value)
                #expect(try await daemon.waitFor { $0.clientClosed })
                #expect(daemon.frames.last == .goodbye)
            }
        #endif
    }

    @Test func startIsIdempotent() {
        let daemon = FakeDaemon()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = daemon.path
        let first = TaskWatch.start(configuration)
        let second = TaskWatch.start(configuration)
        #expect(!second)
        #if TASKWATCH_SILENT
            #expect(!first && !TaskWatch.isRunning)
        #else
            #expect(TaskWatch.isRunning)
        #endif
    }
}

extension Counter {
    func spawnPlain(count: Int) async {
        for _ in 0..<count {
            await Task {
                self.value += 1
            }.value
        }
    }
}

/// Reports the series it is given, only when collected on one thread (a test's, driving a reporter
/// itself), so that other reporters of the process leave it alone. Each may be retired at its first
/// collection, just after its value is taken.
final class TestSource: ReportSource {
    private let thread: pthread_t
    private let state = Mutex<[(id: SeriesID, retireOnCollect: Bool)]>([])

    init(collectingOn thread: pthread_t) { self.thread = thread }

    var ids: [SeriesID] { state.withLock { $0.map(\.id) } }

    func add(_ id: SeriesID, retireOnCollect: Bool = false) {
        state.withLock { $0.append((id, retireOnCollect)) }
    }

    func collect(into report: inout ReportBuilder) {
        guard pthread_equal(pthread_self(), thread) != 0 else { return }
        let series = state.withLock { $0 }
        for (id, _) in series { report.value(id, 0) }
        for (id, retire) in series where retire { TaskWatch.retire(id) }
        state.withLock { $0.removeAll(where: \.retireOnCollect) }
    }
}

func waitUntil(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(2))
    }
    return false
}

/// The blocked-signal masks (`SigBlk` in /proc) of this process's reporter threads.
func reporterThreadMasks() -> [UInt64] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { tid -> UInt64? in
        let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)
        guard comm?.trimmingCharacters(in: .whitespacesAndNewlines) == Reporter.threadName,
            let status = try? String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigBlk:") })
        else { return nil }
        return UInt64(line.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces), radix: 16)
    }
}
