import CoreMetrics
import Foundation
import Metrics
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatch
@testable import TaskWatchMetrics

/// The ids of this process's threads named as a reporter's.
private func reporterThreads() -> Set<String> {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return Set(
        tasks.filter { tid in
            let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)
            return comm?.trimmingCharacters(in: .newlines) == Reporter.threadName
        })
}

/// How often a thread of this process has gone to sleep (`voluntary_ctxt_switches`): each is a wake-up.
private func sleeps(ofThread tid: String) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8) else { return nil }
    let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
    return line.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
}

/// A reporter on its own listener, 20 ms interval, with a gauge of `factory` reported and the reporter
/// backed off (two reports half a second apart) before the test goes on.
private struct BackedOffReporter {
    let factory = TaskWatchMetricsFactory()
    let listener: FakeDaemon
    let reporter: Reporter
    let gauge: Gauge
    let id: UInt32
    /// The reporter's thread id, when no other reporter started beside it.
    let thread: String?

    init() throws {
        TaskWatch.register(source: factory)
        listener = FakeDaemon()
        listener.listen()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = listener.path
        configuration.interval = .milliseconds(20)
        reporter = Reporter(configuration: configuration)
        let threadsBefore = reporterThreads()
        reporter.start()

        let name = unique("wake")
        gauge = Gauge(label: name, factory: factory)
        gauge.record(1)
        var id: UInt32?
        let listener = listener
        let reported = try listener.poll {
            id = listener.declarations.last { $0.name == name }?.id
            guard let id else { return false }
            return listener.timedValues.contains { $0.updates.contains { $0.id == id && $0.value == 1 } }
        }
        #expect(reported, "the gauge never arrived")
        self.id = id ?? 0
        // Named by the thread itself, which has reported by now.
        let started = reporterThreads().subtracting(threadsBefore)
        thread = started.count == 1 ? started.first : nil

        // Nothing changes: the report period doubles from 20 ms towards a second. Once two reports are
        // half a second apart, the next one is due more than half a second after the last.
        var seen = listener.timedValues.count
        let backedOff = try listener.poll { () -> Bool in
            defer { seen = listener.timedValues.count }
            guard listener.timedValues.count > seen, seen > 0 else { return false }
            return listener.timedValues[seen].at - listener.timedValues[seen - 1].at >= .milliseconds(500)
        }
        #expect(backedOff, "the reporter never backed off")
    }

    func stop() {
        reporter.stop()
        TaskWatch.unregister(source: factory)
    }
}

@Suite(.serialized) struct MetricsWakeTests {
    /// An update from a thread that runs no task, in a process whose reporter backed off because nothing
    /// changed, goes out within about one report interval. Only spawns and executor jobs woke a quiet
    /// reporter, so such an update waited for the back-off: up to a second.
    @Test func aChangedValueWakesABackedOffReporter() throws {
        let setUp = try BackedOffReporter()
        defer { setUp.stop() }
        let (listener, gauge, id) = (setUp.listener, setUp.gauge, setUp.id)

        let updated = ContinuousClock.now
        gauge.record(2)
        var arrived: ContinuousClock.Instant?
        _ = try listener.poll(timeout: .seconds(5)) {
            let frame = listener.timedValues.first { frame in
                frame.at >= updated && frame.updates.contains { $0.id == id && $0.value == 2 }
            }
            arrived = frame?.at
            return arrived != nil
        }
        let latency = arrived.map { $0 - updated }
        print("a gauge update after the reporter backed off: sent after \(latency.map(String.init) ?? "never")")
        #expect(latency != nil)
        #if !TASKWATCH_SILENT
            // Within one 20 ms interval and a wake-up; the back-off had the next report 500 ms or more away.
            #expect(latency.map { $0 < .milliseconds(300) } ?? false)
        #endif
    }

    /// A gauge set again and again to the value it holds wakes nobody: the reporter stays backed off.
    /// (A first version woke the reporter on every update, ~190 wake-ups a second for a gauge set every
    /// 20 ms, where a process without updates has one.)
    @Test func anUnchangedValueLeavesTheReporterBackedOff() throws {
        let setUp = try BackedOffReporter()
        defer { setUp.stop() }
        let (listener, gauge) = (setUp.listener, setUp.gauge)
        let before = listener.timedValues.count
        let deadline = ContinuousClock.now + .milliseconds(1_500)
        while ContinuousClock.now < deadline {
            gauge.record(1)
            try listener.drain()
            usleep(5_000)
        }
        let reports = listener.timedValues.count - before
        print("reports in 1.5 s of a gauge set to its own value every 5 ms: \(reports)")
        // Backed off to 640 ms–1 s periods: two or three reports; woken by every set, about 75.
        #expect(reports <= 5)
    }

    /// An in-flight count raised and lowered around each short request, a request every 2 ms: each
    /// report finds it back at 0, nothing changed, and the reporter stays backed off. Each raise woke the
    /// reporter for a report 20 ms later that found nothing changed, and the next raise woke it again:
    /// it never backed off (73 reports and 373 reporter wake-ups in 1.5 s; now 7 and 11).
    @Test func aValueThatGoesBackBeforeEachReportLeavesTheReporterBackedOff() throws {
        let setUp = try BackedOffReporter()
        defer { setUp.stop() }
        let listener = setUp.listener
        let inFlight = Meter(label: unique("in_flight"), factory: setUp.factory)
        let before = listener.timedValues.count
        let sleptBefore = setUp.thread.flatMap(sleeps(ofThread:))
        let deadline = ContinuousClock.now + .milliseconds(1_500)
        while ContinuousClock.now < deadline {
            // Lowered at once: a report that samples the count while raised rightly takes it for a
            // change, and a sleep between the two (a usleep of 50 µs could last milliseconds with builds
            // running beside) let that happen often enough to pass the bound below. The raise wakes the
            // reporter however short it is.
            inFlight.increment()
            inFlight.decrement()
            try listener.drain()
            usleep(2_000)
        }
        let reports = listener.timedValues.count - before
        let sleptAfter = setUp.thread.flatMap(sleeps(ofThread:))
        let wakeUps = sleptBefore.flatMap { before in sleptAfter.map { $0 - before } }
        print(
            "reports in 1.5 s of an in-flight count raised and lowered every 2 ms: \(reports), "
                + "reporter wake-ups: \(wakeUps.map(String.init) ?? "unknown")")
        // Backed off: a report a period of up to 1 s, and one woken report each (7 on a quiet machine);
        // woken by every raise, ~70. A report that catches the count raised (this thread preempted
        // between the two updates) rightly counts as a change and restarts the back-off, about six
        // reports more each time: with a 50 µs sleep between them, 16, 21 and 37 were seen with builds
        // running beside.
        #expect(reports <= 35)
    }

    /// A counter incremented every 50 ms from a thread that runs no task: each increment wakes the
    /// backed-off reporter for one report an interval later, and that is all it costs. The wake-up took
    /// the reporter to its normal cadence with sub-sampling of live counts, which had not moved: four
    /// wake-ups more a report (195 wake-ups for 30 increments; now 95).
    @Test func aChangedValueCostsNoSubsampling() throws {
        let setUp = try BackedOffReporter()
        defer { setUp.stop() }
        let counter = Counter(label: unique("ticks"), factory: setUp.factory)
        let thread = try #require(setUp.thread, "another reporter started beside this one")
        let sleptBefore = try #require(sleeps(ofThread: thread))
        let increments = 30
        for _ in 0..<increments {
            counter.increment()
            try setUp.listener.drain()
            usleep(50_000)
        }
        let wakeUps = try #require(sleeps(ofThread: thread)) - sleptBefore
        print("reporter wake-ups for \(increments) increments 50 ms apart: \(wakeUps)")
        #if !TASKWATCH_SILENT
            // The wake-up, the report 20 ms later with the change, and a quiet one 20 ms after that, which
            // backs off again: 3 an increment. With sub-sampling, 4 more.
            #expect(wakeUps <= increments * 9 / 2)
        #endif
    }
}
