import Foundation
import Synchronization
import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

/// A clock the test moves by hand.
final class ManualClock: DaemonClock {
    private let now = Mutex<UInt64>(1_000_000_000)

    func monotonicNanoseconds() -> UInt64 { now.withLock { $0 } }
    func wallSeconds() -> Double { 1_700_000_000 }
    func advance(seconds: Double) { now.withLock { $0 += UInt64(seconds * 1e9) } }
}

/// Process start times by pid, standing in for `/proc`, so that a test can give a pid to a new process:
/// a pid without an entry has none, as when `/proc` hides the process.
final class FakeStartTimes: Sendable {
    private let ticks = Mutex<[Int32: UInt64]>([:])

    func set(_ pid: Int32, _ value: UInt64?) { ticks.withLock { $0[pid] = value } }
    func read(_ pid: Int32) -> UInt64? { ticks.withLock { $0[pid] } }
}

/// Drives a registry the way the ingest listener does, from frames built with the wire encoder.
struct Harness {
    let clock = ManualClock()
    let registry: Registry
    let exporter: Exporter

    /// - Parameters:
    ///   - startTimes: the processes' start times; `/proc`'s when nil.
    ///   - log: where refusals are logged; nowhere when nil.
    init(limits: RegistryLimits = RegistryLimits(), startTimes: FakeStartTimes? = nil, log: RefusalLog? = nil) {
        if let startTimes {
            registry = Registry(limits: limits, clock: clock, log: log, startTicks: { startTimes.read($0) })
        } else {
            registry = Registry(limits: limits, clock: clock, log: log)
        }
        exporter = Exporter(registry: registry, build: BuildInfo(version: "test", revision: "abc", swiftVersion: "6.3"))
    }

    @discardableResult
    func open(_ connection: UInt64, pid: Int32, uid: UInt32 = 1000) -> Bool {
        registry.connectionOpened(ConnectionID(connection), peer: PeerCredentials(pid: pid, uid: uid, gid: uid))
    }

    @discardableResult
    func send(_ connection: UInt64, _ bytes: [UInt8], truncated: Bool = false) -> IngestVerdict {
        bytes.withUnsafeBytes {
            registry.frameReceived(ConnectionID(connection), bytes: $0, truncated: truncated)
        }
    }

    func send(_ connection: UInt64, _ frame: Frame) {
        for bytes in FrameEncoder.encode(frame) { send(connection, bytes) }
    }

    func hello(_ connection: UInt64, process: String = "app", claimedPID: UInt32 = 1, labels: [Label] = []) {
        send(
            connection,
            .hello(
                Hello(
                    claimedPID: claimedPID, intervalNanoseconds: 10_000_000, process: process,
                    clientVersion: "test", labels: labels)))
    }

    /// Opens a connection from pid `connection`, says hello and declares `series`.
    func connect(_ connection: UInt64, uid: UInt32 = 1000, process: String, declaring series: [SeriesDeclaration]) {
        open(connection, pid: Int32(connection), uid: uid)
        hello(connection, process: process)
        send(connection, .declare(series))
    }

    func text(_ format: ExpositionFormat = .text) -> String {
        String(decoding: exporter.render(format), as: UTF8.self)
    }

    /// The value of the line whose series text (name and labels) is exactly `series`.
    func value(_ series: String) -> String? {
        for line in text().split(separator: "\n") where line.hasPrefix(series + " ") {
            return String(line.dropFirst(series.count + 1))
        }
        return nil
    }

    func rejected(_ reason: FrameRejection) -> String? {
        value("taskwatch_messages_rejected_total{reason=\"\(reason.rawValue)\"}")
    }

    func dropped(_ reason: SeriesRejection) -> String? {
        value("taskwatch_series_dropped_total{reason=\"\(reason.rawValue)\"}")
    }
}

let tasksGauge = SeriesDeclaration(
    id: 1, type: .gauge, name: "swift_tasks", help: "Live tasks.", labels: [Label("task", "default")])
let createdCounter = SeriesDeclaration(
    id: 2, type: .counter, name: "swift_tasks_created_total", help: "Tasks started.", labels: [Label("task", "default")]
)

/// Three gauges of one family, `app_g{i="0"}` to `app_g{i="2"}`.
let threeGauges = (0..<3).map {
    SeriesDeclaration(id: UInt32(100 + $0), type: .gauge, name: "app_g", help: "", labels: [Label("i", "\($0)")])
}

@Suite struct RegistryTests {
    @Test func aConnectionWithoutAHelloByItsDeadlineIsClosedAndCounted() {
        var limits = RegistryLimits()
        limits.maxClients = 2
        let h = Harness(limits: limits)
        h.open(1, pid: 100)
        h.open(2, pid: 200)
        h.hello(2)
        #expect(!h.open(3, pid: 300), "two connections hold both places")
        #expect(h.registry.helloDeadlinePassed(ConnectionID(1)))
        #expect(!h.registry.helloDeadlinePassed(ConnectionID(2)), "it said hello")
        #expect(!h.registry.helloDeadlinePassed(ConnectionID(9)), "no such connection")
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"hello_timeout\"}") == "1")
        // The listener closes it; its place is free again.
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.open(3, pid: 300))
    }

    /// A connection that another of its process took over (a second hello under the same name) is
    /// closed at its hello deadline, but it did say hello: not counted as `hello_timeout`.
    @Test func aSupersededConnectionIsClosedWithoutCountingAHelloTimeout() {
        let h = Harness()
        h.open(1, pid: 100)
        h.hello(1)
        h.open(2, pid: 100)
        h.hello(2)
        #expect(h.registry.helloDeadlinePassed(ConnectionID(1)))
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"hello_timeout\"}") == "0")
    }

    @Test func valuesAppearWithProcessPidAndTaskLabels() {
        let h = Harness()
        h.open(1, pid: 4242)
        h.hello(1, process: "api")
        h.send(1, .declare([tasksGauge, createdCounter]))
        h.send(1, .values([ValueUpdate(id: 1, value: 17), ValueUpdate(id: 2, value: 1234)]))
        #expect(h.value("swift_tasks{process=\"api\",pid=\"4242\",task=\"default\"}") == "17")
        #expect(h.value("swift_tasks_created_total{process=\"api\",pid=\"4242\",task=\"default\"}") == "1234")
        #expect(h.value("taskwatch_client_up{process=\"api\",pid=\"4242\"}") == "1")
        #expect(h.value("taskwatch_clients") == "1")
        #expect(h.value("taskwatch_series") == "2")
    }

    @Test func pidComesFromTheConnectionNotThePayload() {
        let h = Harness()
        h.open(1, pid: 4242)
        h.hello(1, process: "liar", claimedPID: 1)
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 3)]))
        #expect(h.value("swift_tasks{process=\"liar\",pid=\"4242\",task=\"default\"}") == "3")
        #expect(!h.text().contains("pid=\"1\""))
    }

    @Test func declaredButUnsetSeriesAreNotShown() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge]))
        #expect(!h.text().contains("swift_tasks{"))
    }

    /// A goodbye says the process leaves on purpose: its series go when the connection closes, with no
    /// grace period (which is for a process that crashed).
    @Test func aClientThatSaidGoodbyeVanishesAtOnce() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 5)]))
        h.send(1, .goodbye)
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == "5")
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == nil)
        #expect(h.value("taskwatch_client_up{process=\"app\",pid=\"10\"}") == nil)
        #expect(h.value("taskwatch_series") == "0")
    }

    /// Gone clients held for their grace period are capped at `maxClients`, the oldest gone first out:
    /// a loop of connect, hello and close cannot pile them up.
    @Test func goneClientsHeldForGraceAreCappedLikeConnectedOnes() {
        var limits = RegistryLimits()
        limits.maxClients = 2
        let h = Harness(limits: limits)
        for id in UInt64(1)...5 {
            h.connect(id, process: "p\(id)", declaring: [tasksGauge])
            h.send(id, .values([ValueUpdate(id: 1, value: Double(id))]))
            h.registry.connectionClosed(ConnectionID(id))
            h.clock.advance(seconds: 1)
        }
        let shown = (1...5).filter { h.text().contains("process=\"p\($0)\"") }
        #expect(shown == [4, 5])
        #expect(h.value("taskwatch_series") == "2")
    }

    /// Uids that come and go leave no usage behind, whichever way their clients leave: grace expiry,
    /// eviction to make room, a reconnect taking over a gone connection, a goodbye.
    @Test func uidsThatComeAndGoLeaveNothingBehind() {
        var limits = RegistryLimits()
        limits.maxSeriesPerUID = 1
        let h = Harness(limits: limits)
        h.connect(1, uid: 1, process: "expires", declaring: [tasksGauge])
        h.registry.connectionClosed(ConnectionID(1))
        h.connect(2, uid: 2, process: "evicted", declaring: [tasksGauge])
        h.registry.connectionClosed(ConnectionID(2))
        h.connect(3, uid: 2, process: "evictor", declaring: [tasksGauge])
        #expect(h.dropped(.uidLimit) == "0", "the gone client of uid 2 made room")
        h.open(4, pid: 4, uid: 3)
        h.hello(4, process: "again")
        h.send(4, .declare([tasksGauge]))
        h.registry.connectionClosed(ConnectionID(4))
        h.open(5, pid: 4, uid: 3)
        h.hello(5, process: "again")
        h.send(5, .goodbye)
        h.registry.connectionClosed(ConnectionID(5))
        h.send(3, .goodbye)
        h.registry.connectionClosed(ConnectionID(3))
        h.clock.advance(seconds: 31)
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value("taskwatch_series") == "0")
        #expect(h.registry.trackedUIDCount == 0)
    }

    @Test func goneClientStaysForGraceThenVanishes() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 5)]))
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.value("taskwatch_client_up{process=\"app\",pid=\"10\"}") == "0")
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == "5")
        #expect(h.value("taskwatch_clients") == "0")
        h.clock.advance(seconds: 29)
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == "5")
        h.clock.advance(seconds: 2)
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == nil)
        #expect(h.value("taskwatch_client_up{process=\"app\",pid=\"10\"}") == nil)
        #expect(h.value("taskwatch_series") == "0")
    }

    @Test func reconnectingProcessReplacesItsGracedSeries() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([createdCounter]))
        h.send(1, .values([ValueUpdate(id: 2, value: 50)]))
        h.registry.connectionClosed(ConnectionID(1))
        h.open(2, pid: 10)
        h.hello(2)
        h.send(2, .declare([createdCounter]))
        h.send(2, .values([ValueUpdate(id: 2, value: 60)]))
        let lines = h.text().split(separator: "\n").filter { $0.hasPrefix("swift_tasks_created_total{") }
        #expect(lines == ["swift_tasks_created_total{process=\"app\",pid=\"10\",task=\"default\"} 60"])
        #expect(h.value("taskwatch_series") == "1")
    }

    @Test func peakIsTheHighestSampleWithinTheWindow() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 3)]))
        h.send(1, .peaks([PeakSample(id: 1, value: 900)]))
        let peak = "swift_tasks_peak{process=\"app\",pid=\"10\",task=\"default\"}"
        #expect(h.value(peak) == "900")
        h.clock.advance(seconds: 10)
        h.send(1, .peaks([PeakSample(id: 1, value: 40)]))
        #expect(h.value(peak) == "900")
        h.clock.advance(seconds: 6)
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value(peak) == "40")
        h.clock.advance(seconds: 16)
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value(peak) == "3")
        h.send(1, .values([ValueUpdate(id: 1, value: 7)]))
        #expect(h.value(peak) == "7")
    }

    @Test func peakWindowHoldsABoundedNumberOfEntries() {
        let window: UInt64 = 15_000_000_000
        var peaks = PeakWindow(window: window)
        // One frame repeating a gauge with falling values: all at one instant, so one entry.
        for sample in 0..<5_460 { peaks.add(Double(10_000 - sample), at: 1_000) }
        #expect(peaks.count == 1)
        #expect(peaks.maximum(at: 1_000) == 10_000)
        // Strictly falling samples every millisecond for twice the window: one entry per slot at most.
        var windowMax = PeakWindow(window: window)
        let start: UInt64 = 1_000_000_000
        var largest = 0
        for step in 0..<30_000 {
            windowMax.add(Double(1_000_000 - step), at: start + UInt64(step) * 1_000_000)
            largest = max(largest, windowMax.count)
        }
        #expect(largest <= Int(PeakWindow.slotsPerWindow) + 2)
    }

    @Test func peakWindowIsExactToWithinOneSlot() {
        let window: UInt64 = 15_000_000_000
        let slot = window / PeakWindow.slotsPerWindow
        var peaks = PeakWindow(window: window)
        let start: UInt64 = 1_000_000_000
        peaks.add(900, at: start)
        peaks.add(40, at: start + 10_000_000_000)
        // Within the window, and on its inclusive edge, the sample counts.
        #expect(peaks.maximum(at: start + window) == 900)
        // Past the window by more than one slot, it no longer does.
        #expect(peaks.maximum(at: start + window + slot + 1) == 40)
        #expect(peaks.maximum(at: start + 10_000_000_000 + window + slot + 1) == nil)
    }

    @Test func repeatedPeakSamplesInOneFrameShowTheirMaximum() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 3)]))
        h.send(1, .peaks((0..<5_460).map { PeakSample(id: 1, value: Double(($0 * 7_919) % 5_000)) }))
        #expect(h.value("swift_tasks_peak{process=\"app\",pid=\"10\",task=\"default\"}") == "4999")
    }

    @Test func histogramsAreCumulativeWithSumAndCount() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(
            1,
            .declare([
                SeriesDeclaration(
                    id: 3, type: .histogram, name: "swift_executor_lag_seconds", help: "Lag.", bounds: [0.001, 0.1])
            ]))
        h.send(1, .histograms([HistogramUpdate(id: 3, buckets: [5, 3, 2], sum: 1.25)]))
        #expect(h.value("swift_executor_lag_seconds_bucket{process=\"app\",pid=\"10\",le=\"0.001\"}") == "5")
        #expect(h.value("swift_executor_lag_seconds_bucket{process=\"app\",pid=\"10\",le=\"0.1\"}") == "8")
        #expect(h.value("swift_executor_lag_seconds_bucket{process=\"app\",pid=\"10\",le=\"+Inf\"}") == "10")
        #expect(h.value("swift_executor_lag_seconds_sum{process=\"app\",pid=\"10\"}") == "1.25")
        #expect(h.value("swift_executor_lag_seconds_count{process=\"app\",pid=\"10\"}") == "10")
    }

    @Test func labelValuesAreEscaped() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1, process: "a\"b\\c\nd ü 🚀")
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 1)]))
        #expect(h.value("swift_tasks{process=\"a\\\"b\\\\c\\nd ü 🚀\",pid=\"10\",task=\"default\"}") == "1")
    }
}

@Suite struct BadInputTests {
    func ready(_ h: Harness) {
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge, createdCounter]))
        h.send(1, .values([ValueUpdate(id: 1, value: 1), ValueUpdate(id: 2, value: 10)]))
    }

    @Test func structuralProblemsAreCountedByReason() {
        let h = Harness()
        ready(h)
        h.send(1, [1, 2, 3])
        h.send(1, Array(FrameEncoder.values([ValueUpdate(id: 1, value: 2)])[0].dropLast(3)))
        h.send(1, [UInt8](repeating: 0, count: 100), truncated: true)
        #expect(h.rejected(.truncated) == "2")
        #expect(h.rejected(.oversize) == "1")
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == "1")
    }

    @Test func updatesBeforeHelloAreRefused() {
        let h = Harness()
        h.open(1, pid: 10)
        h.send(1, .values([ValueUpdate(id: 1, value: 2)]))
        #expect(h.rejected(.noHello) == "1")
    }

    @Test func unknownIdsAndBadValuesAreRefusedWholeFrame() {
        let h = Harness()
        ready(h)
        h.send(1, .values([ValueUpdate(id: 1, value: 99), ValueUpdate(id: 77, value: 1)]))
        h.send(1, .values([ValueUpdate(id: 2, value: .nan)]))
        h.send(1, .values([ValueUpdate(id: 2, value: -1)]))
        h.send(1, .values([ValueUpdate(id: 2, value: 9)]))
        h.send(1, .values([ValueUpdate(id: 1, value: .nan)]))
        #expect(h.rejected(.unknownSeries) == "1")
        #expect(h.rejected(.invalidValue) == "3")
        #expect(h.rejected(.counterDecrease) == "1")
        #expect(h.value("swift_tasks{process=\"app\",pid=\"10\",task=\"default\"}") == "1")
        #expect(h.value("swift_tasks_created_total{process=\"app\",pid=\"10\",task=\"default\"}") == "10")
    }

    @Test func conflictingRedeclarationIsDroppedAndCounted() {
        let h = Harness()
        ready(h)
        h.open(2, pid: 11)
        h.hello(2)
        h.send(
            2,
            .declare([
                SeriesDeclaration(id: 1, type: .histogram, name: "swift_tasks", help: "", labels: [Label("task", "x")]),
                SeriesDeclaration(id: 2, type: .gauge, name: "swift_tasks", help: "", labels: [Label("other", "x")]),
                SeriesDeclaration(id: 3, type: .gauge, name: "swift_tasks", help: "", labels: [Label("task", "ok")]),
            ]))
        h.send(2, .values([ValueUpdate(id: 1, value: 5), ValueUpdate(id: 2, value: 5), ValueUpdate(id: 3, value: 6)]))
        #expect(h.dropped(.conflict) == "2")
        #expect(h.value("swift_tasks{process=\"app\",pid=\"11\",task=\"ok\"}") == "6")
        #expect(h.rejected(.unknownSeries) == "0")
    }

    /// A review's repro: an app's `swift_tasks` gauge without labels, declared before any task monitor,
    /// took the name, and the task series of every other process were dropped as conflicts. The
    /// contract's names keep the contract's shape whoever comes first.
    @Test func theContractsSeriesKeepTheirShapeWhoeverDeclaresFirst() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1, process: "squatter")
        h.send(
            1,
            .declare([
                SeriesDeclaration(id: 1, type: .gauge, name: "swift_tasks", help: "", labels: []),
                SeriesDeclaration(id: 2, type: .counter, name: "swift_tasks", help: "", labels: []),
                SeriesDeclaration(id: 3, type: .gauge, name: "swift_tasks_created", help: "", labels: []),
                SeriesDeclaration(id: 4, type: .gauge, name: "swift_executor_lag_seconds_count", help: "", labels: []),
                SeriesDeclaration(id: 5, type: .gauge, name: "swift_task_duration_seconds", help: "", labels: []),
                SeriesDeclaration(id: 6, type: .gauge, name: "swift_tasks_queued", help: "", labels: []),
            ]))
        #expect(h.dropped(.conflict) == "5")
        h.open(2, pid: 11)
        h.hello(2)
        h.send(2, .declare([tasksGauge, createdCounter]))
        h.send(2, .values([ValueUpdate(id: 1, value: 17), ValueUpdate(id: 2, value: 20)]))
        #expect(h.dropped(.conflict) == "5")
        #expect(h.value("swift_tasks{process=\"app\",pid=\"11\",task=\"default\"}") == "17")
        #expect(h.value("swift_tasks_created_total{process=\"app\",pid=\"11\",task=\"default\"}") == "20")
    }

    @Test func reservedAndInvalidNamesAreDropped() {
        let h = Harness()
        ready(h)
        h.send(
            1,
            .declare([
                SeriesDeclaration(id: 10, type: .gauge, name: "9bad", help: ""),
                SeriesDeclaration(id: 11, type: .gauge, name: "taskwatch_clients", help: ""),
                SeriesDeclaration(id: 12, type: .gauge, name: "ok", help: "", labels: [Label("pid", "1")]),
                SeriesDeclaration(id: 13, type: .gauge, name: "ok2", help: "", labels: [Label("a-b", "1")]),
                SeriesDeclaration(id: 14, type: .gauge, name: "swift_process_threads", help: ""),
            ]))
        #expect(h.dropped(.invalidName) == "2")
        #expect(h.dropped(.reservedName) == "2")
        #expect(h.dropped(.reservedLabel) == "1")
    }

    @Test func seriesLimitsHoldPerClientAndGlobally() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 5
        limits.maxSeries = 8
        let h = Harness(limits: limits)
        let many = (0..<7).map {
            SeriesDeclaration(
                id: UInt32(100 + $0), type: .gauge, name: "app_g", help: "", labels: [Label("i", "\($0)")])
        }
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare(many))
        h.open(2, pid: 11)
        h.hello(2)
        h.send(2, .declare(many))
        #expect(h.dropped(.clientLimit) == "2")
        #expect(h.dropped(.globalLimit) == "4")
        #expect(h.value("taskwatch_series") == "8")
    }

    @Test func aGoneClientsSeriesMakeRoomForALiveClientsAtTheGlobalCap() {
        var limits = RegistryLimits()
        limits.maxSeries = 4
        let h = Harness(limits: limits)
        for (connection, name) in [(UInt64(1), "first"), (2, "second")] {
            h.connect(connection, process: name, declaring: threeGauges)
        }
        // Both connected: the cap holds as before.
        #expect(h.value("taskwatch_series") == "4")
        #expect(h.dropped(.globalLimit) == "2")
        // The first goes, and its series are held for their 30 s grace period; live clients at the cap
        // get their room: the second's two waiting declarations first, then one of the third's.
        h.registry.connectionClosed(ConnectionID(1))
        h.connect(3, process: "third", declaring: threeGauges)
        #expect(h.dropped(.globalLimit) == "4")
        #expect(h.value("taskwatch_series") == "4")
        #expect(!h.text().contains("process=\"first\""))
        #expect(h.text().contains("process=\"second\""))
        #expect(h.text().contains("process=\"third\""))
        // Nobody gone any more: the cap refuses again.
        h.connect(4, process: "fourth", declaring: threeGauges)
        #expect(h.dropped(.globalLimit) == "7")
    }

    @Test func connectionsPerUIDAreCapped() {
        var limits = RegistryLimits()
        limits.maxClientsPerUID = 2
        let h = Harness(limits: limits)
        #expect(h.open(1, pid: 1, uid: 1000))
        #expect(h.open(2, pid: 2, uid: 1000))
        #expect(!h.open(3, pid: 3, uid: 1000))
        #expect(h.open(4, pid: 4, uid: 2000), "another uid has its own places")
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"uid_limit\"}") == "1")
        // A connection of the uid closes: its place is free again.
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.open(5, pid: 5, uid: 1000))
        #expect(!h.open(6, pid: 6, uid: 1000))
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"uid_limit\"}") == "2")
    }

    @Test func seriesPerUIDAreCappedAcrossConnections() {
        var limits = RegistryLimits()
        limits.maxSeriesPerUID = 4
        let h = Harness(limits: limits)
        for (connection, uid, name) in [(UInt64(1), UInt32(1000), "first"), (2, 1000, "second"), (3, 2000, "other")] {
            h.connect(connection, uid: uid, process: name, declaring: threeGauges)
        }
        // The two connections of uid 1000 share 4 series; uid 2000 has its own.
        #expect(h.dropped(.uidLimit) == "2")
        #expect(h.value("taskwatch_series") == "7")
        // Gone clients held for grace: the other uid's, gone first, is not touched; the same uid's is
        // freed for live clients of that uid: the second's two waiting declarations, then one of the
        // fourth's.
        h.registry.connectionClosed(ConnectionID(3))
        h.registry.connectionClosed(ConnectionID(1))
        h.connect(4, uid: 1000, process: "fourth", declaring: threeGauges)
        #expect(h.dropped(.uidLimit) == "4")
        #expect(h.value("taskwatch_series") == "7")
        #expect(!h.text().contains("process=\"first\""))
        #expect(h.text().contains("process=\"other\""))
        #expect(h.text().contains("process=\"fourth\""))
        // At the cap with nobody of the uid gone: refused again, however many series other uids hold.
        h.connect(5, uid: 1000, process: "fifth", declaring: threeGauges)
        #expect(h.dropped(.uidLimit) == "7")
    }

    @Test func labelBytesAreBudgetedPerClientAndGlobally() {
        var limits = RegistryLimits()
        // Each series below is one line: 5 (name) + 104 (`v="…"`, as stored) + 22 (`process="app",pid="10"`,
        // the connection's labels; the other processes' names and pids are as long) + 32 bytes.
        let series = 5 + 104 + 22 + Registry.lineOverhead
        #expect(series == Registry.chargedBytes(name: "app_w", labelText: 104, connectionLabels: 22, bounds: nil))
        let help = "Reported by a TaskWatch client without help text.".utf8.count
        limits.maxLabelBytesPerClient = 3 * series + 10
        // Two connections at a time, whose own lines count overall too.
        limits.maxLabelBytes = 4 * series + help + 10 + 2 * Registry.connectionLineBytes(connectionLabels: 22)
        let h = Harness(limits: limits)
        let wide = (0..<4).map {
            SeriesDeclaration(
                id: UInt32(100 + $0), type: .gauge, name: "app_w", help: "",
                labels: [Label("v", String(repeating: "\($0)", count: 100))])
        }
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare(wide))
        #expect(h.dropped(.byteLimit) == "1", "the fourth would pass the connection's budget")
        h.open(2, pid: 11)
        h.hello(2, process: "oth")
        h.send(2, .declare(wide))
        #expect(h.dropped(.byteLimit) == "4", "one more fits under the overall budget, not two")
        #expect(h.value("taskwatch_series") == "4")
        // A client's bytes are freed with its series: the second's declaration that waits (its copy's
        // bytes leave no room for another to wait) takes them first, at the tick.
        h.registry.connectionClosed(ConnectionID(1))
        h.clock.advance(seconds: 31)
        h.registry.tick(nowNanoseconds: 0)
        h.open(3, pid: 12)
        h.hello(3, process: "thd")
        h.send(3, .declare(wide))
        #expect(h.dropped(.byteLimit) == "6", "two fit again (four overall)")
        #expect(h.value("taskwatch_series") == "4")
    }

    /// The lines the daemon adds for a connection repeat its hello's labels (up to 8 KiB): they count
    /// against the overall budget from the hello on, or 4,096 connections would add about 270 MB to every
    /// scrape. A hello that does not fit is refused and its connection closed, after gone clients held
    /// for grace have given way.
    @Test func aConnectionsOwnLinesCountAgainstTheOverallBudget() {
        let wide = [Label("team", String(repeating: "t", count: 4_000))]
        // `process="appN",pid="NN",team="…"`: 23 + 4,008 bytes.
        let perHello = Registry.connectionLineBytes(connectionLabels: 23 + 4_008)
        var limits = RegistryLimits()
        // Room for two wide hellos and one without labels (`process="app3",pid="13"`, 23 bytes).
        let budget = 2 * perHello + Registry.connectionLineBytes(connectionLabels: 23)
        limits.maxLabelBytes = budget
        let captured = CapturedLog()
        let h = Harness(limits: limits, log: RefusalLog(logger: captured.logger()))
        for pid in [10, 11] {
            h.open(UInt64(pid), pid: Int32(pid))
            h.hello(UInt64(pid), process: "app\(pid - 10)", labels: wide)
        }
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"byte_limit\"}") == "0")
        h.open(12, pid: 12)
        let hello = Hello(
            claimedPID: 12, intervalNanoseconds: 10_000_000, process: "app2", clientVersion: "test", labels: wide)
        let verdict = h.send(12, FrameEncoder.encode(.hello(hello))[0])
        #expect(verdict == .disconnect, "a hello past the budget closes its connection")
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"byte_limit\"}") == "1")
        #expect(!h.text().contains("pid=\"12\""))
        #expect(h.registry.helloDeadlinePassed(ConnectionID(12)), "closed, should the listener still hold it")
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"hello_timeout\"}") == "0", "it was not silent")
        let line = captured.events.first { $0.metadata["reason"] == "byte_limit" }
        #expect(line?.metadata["limit"] == "\(budget)")
        h.registry.connectionClosed(ConnectionID(12))
        // A hello without the wide label fits beside them.
        h.open(13, pid: 13)
        h.hello(13, process: "app3")
        #expect(h.value("taskwatch_client_up{process=\"app3\",pid=\"13\"}") == "1")
        // A client gone and held for its grace period gives way to a new hello, as to a new series.
        h.registry.connectionClosed(ConnectionID(10))
        h.open(14, pid: 14)
        h.hello(14, process: "app4", labels: wide)
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"byte_limit\"}") == "1")
        #expect(h.text().contains("process=\"app4\",pid=\"14\""))
        #expect(!h.text().contains("process=\"app0\""))
    }

    /// `Registry.connectionLineNames` is what the exposition shows for a connection beside its series:
    /// its own process here, so that `/proc` has every series to show.
    @Test func theLinesChargedForAConnectionAreTheLinesShownForIt() {
        let h = Harness()
        let pid = getpid()
        h.open(1, pid: pid)
        h.hello(1, process: "self")
        // A report, so that `taskwatch_client_last_report_timestamp_seconds` shows.
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 1)]))
        let connection = "{process=\"self\",pid=\"\(pid)\"}"
        let shown = h.text().split(separator: "\n").filter { $0.contains(connection) }.map {
            String($0.prefix { $0 != "{" })
        }.filter { $0 != "swift_tasks" }
        #expect(shown.sorted() == Registry.connectionLineNames.sorted())
    }

    @Test func tooManyClientsAreRefused() {
        var limits = RegistryLimits()
        limits.maxClients = 2
        let h = Harness(limits: limits)
        #expect(h.open(1, pid: 10))
        #expect(h.open(2, pid: 11))
        #expect(!h.open(3, pid: 12))
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"max_clients\"}") == "1")
    }

    @Test func persistentGarbageDisconnects() {
        let h = Harness()
        ready(h)
        var verdicts: [IngestVerdict] = []
        for _ in 0..<32 { verdicts.append(h.send(1, [0xFF, 0xFF])) }
        #expect(verdicts.dropLast().allSatisfy { $0 == .keep })
        #expect(verdicts.last == .disconnect)
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"bad_frames\"}") == "1")
    }

    @Test func randomFramesNeverBreakTheExposition() {
        let h = Harness()
        ready(h)
        var generator = SystemRandomNumberGenerator()
        let seeds =
            FrameEncoder.declare([tasksGauge, createdCounter]) + FrameEncoder.values([ValueUpdate(id: 1, value: 2)])
        for round in 0..<5_000 {
            var bytes = seeds[round % seeds.count]
            bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            if h.send(1, bytes) == .disconnect { h.open(1, pid: 10); h.hello(1) }
        }
        let text = h.text()
        #expect(text.hasSuffix("\n"))
    }
}

/// Series a client retires (a swift-metrics `destroy`, say): gone from `/metrics`, their places
/// under every limit given back, and their ids free to be declared again.
@Suite struct RegistryRetireTests {
    func series(_ index: Int) -> String { "app_g{process=\"app\",pid=\"1\",i=\"\(index)\"}" }

    @Test func aRetiredSeriesIsHiddenAndItsPlaceReturns() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 3
        let h = Harness(limits: limits)
        h.connect(1, process: "app", declaring: threeGauges)
        h.send(1, .values((100..<103).map { ValueUpdate(id: UInt32($0), value: Double($0)) }))
        #expect(h.value(series(1)) == "101")
        #expect(h.value("taskwatch_series") == "3")

        h.send(1, .retire([101]))
        #expect(h.value(series(1)) == nil)
        #expect(h.value(series(0)) == "100")
        #expect(h.value("taskwatch_series") == "2")
        // Values collected before the retire, still on their way, are skipped, not refused.
        h.send(1, .values([ValueUpdate(id: 101, value: 7), ValueUpdate(id: 100, value: 8)]))
        #expect(h.value(series(0)) == "8")
        #expect(h.value(series(1)) == nil)
        #expect(h.rejected(.unknownSeries) == "0")
        // Its place under the per-connection cap is free again.
        let other = SeriesDeclaration(id: 200, type: .counter, name: "app_c", help: "", labels: [])
        h.send(1, .declare([other]))
        h.send(1, .values([ValueUpdate(id: 200, value: 1)]))
        #expect(h.value("app_c_total{process=\"app\",pid=\"1\"}") == "1")
        #expect(h.dropped(.clientLimit) == "0")
        // The same series, declared again under its old id, is shown again from its next value.
        h.send(1, .retire([200]))
        h.send(1, .declare([threeGauges[1]]))
        #expect(h.value(series(1)) == nil)
        h.send(1, .values([ValueUpdate(id: 101, value: 5)]))
        #expect(h.value(series(1)) == "5")
        #expect(h.value("taskwatch_series") == "3")
        // Ids never declared, or retired twice: nothing happens and nothing is refused.
        h.send(1, .retire([999, 200, 200]))
        #expect(h.rejected(.unknownSeries) == "0")
        #expect(h.value("taskwatch_series") == "3")
        // A family whose every series is retired leaves `/metrics` with them.
        #expect(!h.text().contains("app_c"))
    }

    /// A retired id is remembered (its late values skipped) only for the connection's next
    /// `maxSeriesPerClient` retirements, so retiring ever new ids leaves no trail.
    @Test func retiredIdsAreRememberedForABoundedTime() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 2
        let h = Harness(limits: limits)
        h.open(1, pid: 1)
        h.hello(1)
        for id in UInt32(1)...4 {
            h.send(
                1,
                .declare([SeriesDeclaration(id: id, type: .gauge, name: "g", help: "", labels: [Label("i", "\(id)")])]))
            h.send(1, .retire([id]))
        }
        // Ids 1 and 2 were pushed out by the next two retirements; 3 and 4 are still remembered.
        h.send(1, .values([ValueUpdate(id: 3, value: 1), ValueUpdate(id: 4, value: 1)]))
        #expect(h.rejected(.unknownSeries) == "0")
        h.send(1, .values([ValueUpdate(id: 1, value: 1)]))
        #expect(h.rejected(.unknownSeries) == "1")
        // A refused declaration still gets its own marker, however much was retired.
        h.send(1, .declare([SeriesDeclaration(id: 8, type: .gauge, name: "h", help: "")]))
        h.send(1, .declare([SeriesDeclaration(id: 9, type: .counter, name: "h", help: "")]))
        #expect(h.dropped(.conflict) == "1")
        h.send(1, .values([ValueUpdate(id: 9, value: 1)]))
        #expect(h.rejected(.unknownSeries) == "1")
    }

    /// An id whose declaration was dropped for good (its name here) is free again: declared again,
    /// properly, it is admitted, not refused as `duplicate_series`; retired, it gives back its place
    /// among the connection's `maxSeriesPerClient` dropped ids, whose values are skipped, not refused.
    @Test func anIdDroppedForGoodMayBeDeclaredAgainOrRetired() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 2
        let h = Harness(limits: limits)
        h.open(1, pid: 1)
        h.hello(1)
        let bad = { (id: UInt32) in SeriesDeclaration(id: id, type: .gauge, name: "\(id)bad", help: "") }
        h.send(1, .declare([bad(1), bad(2)]))
        h.send(1, .values([ValueUpdate(id: 1, value: 1)]))
        #expect(h.rejected(.unknownSeries) == "0")
        h.send(1, .retire([2]))
        // Id 3 gets the place id 2 gave back: its values are skipped, not refused as unknown.
        h.send(1, .declare([bad(3)]))
        h.send(1, .values([ValueUpdate(id: 3, value: 1), ValueUpdate(id: 2, value: 1)]))
        #expect(h.rejected(.unknownSeries) == "0")
        #expect(h.dropped(.invalidName) == "3")
        // Id 1 again, properly this time.
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 2)]))
        #expect(h.value("swift_tasks{process=\"app\",pid=\"1\",task=\"default\"}") == "2")
        #expect(h.dropped(.duplicateSeries) == "0")
    }

    /// What a series takes of the byte budget is what it adds to `/metrics`: a counter's name with
    /// `_total`, its labels rendered and escaped, and the connection's labels. A budget of exactly one
    /// such series shows all three, and that a retirement gives back exactly what the declaration took.
    @Test func aRetiredCountersIdentityAndBytesComeBackExactly() {
        let labels = [Label("path", "a\"b\\c\nd")]
        let counter = { (id: UInt32) in
            SeriesDeclaration(id: id, type: .counter, name: "app_c", help: "", labels: labels)
        }
        var limits = RegistryLimits()
        // "app_c_total" (11) + `path="a\"b\\c\nd"` (17: the value's 7 characters take 10 escaped)
        // + `process="app",pid="1"` (21) + 32 for the value and separators.
        limits.maxLabelBytesPerClient = 11 + 17 + 21 + 32
        let h = Harness(limits: limits)
        h.open(1, pid: 1)
        h.hello(1)
        for id in UInt32(1)...5 {
            h.send(1, .declare([counter(id)]))
            h.send(1, .values([ValueUpdate(id: id, value: Double(id))]))
            h.send(1, .retire([id]))
        }
        h.send(1, .declare([counter(6)]))
        h.send(1, .values([ValueUpdate(id: 6, value: 6)]))
        #expect(h.dropped(.byteLimit) == "0")
        #expect(h.dropped(.duplicateSeries) == "0")
        #expect(h.value("app_c_total{process=\"app\",pid=\"1\",path=\"a\\\"b\\\\c\\nd\"}") == "6")
        // One byte less and the same series no longer fits: the budget counted what it says.
        var tight = limits
        tight.maxLabelBytesPerClient = 11 + 17 + 21 + 32 - 1
        let refused = Harness(limits: tight)
        refused.open(1, pid: 1)
        refused.hello(1)
        refused.send(1, .declare([counter(1)]))
        #expect(refused.dropped(.byteLimit) == "1")
    }

    /// A histogram is charged for every line it is shown on: each bound, `+Inf`, `_sum` and `_count`
    /// repeat its name and labels, so 256 bounds cannot multiply what the budget allows by 259.
    @Test func aHistogramIsChargedForEveryLineItIsShownOn() {
        let histogram = SeriesDeclaration(
            id: 1, type: .histogram, name: "app_h", help: "", labels: [Label("a", "b")],
            bounds: (1...10).map(Double.init))
        // 13 lines of "app_h" (5) + `a="b"` (5) + `process="app",pid="1"` (21) + 32.
        let exact = 13 * (5 + 5 + 21 + 32)
        for (budget, dropped) in [(exact, "0"), (exact - 1, "1")] {
            var limits = RegistryLimits()
            limits.maxLabelBytesPerClient = budget
            let h = Harness(limits: limits)
            h.connect(1, process: "app", declaring: [histogram])
            #expect(h.dropped(.byteLimit) == dropped, "budget \(budget)")
        }
    }

    /// The `<gauge>_peak` the daemon adds is one more line on `/metrics`: charged like a declared
    /// series, refused as `byte_limit` past the budget (once), and given back with its gauge.
    @Test func anAddedPeakIsChargedLikeADeclaredSeries() {
        let gauge = { (id: UInt32) in
            SeriesDeclaration(id: id, type: .gauge, name: "app_g", help: "", labels: [Label("k", "a")])
        }
        // "app_g" (5) + `k="a"` (5) + `process="app",pid="1"` (21) + 32; its peak "app_g_peak" (10) the same.
        let both = (5 + 5 + 21 + 32) + (10 + 5 + 21 + 32)
        for (budget, dropped) in [(both, "0"), (both - 1, "1")] {
            var limits = RegistryLimits()
            limits.maxLabelBytesPerClient = budget
            let h = Harness(limits: limits)
            h.connect(1, process: "app", declaring: [gauge(1)])
            h.send(1, .values([ValueUpdate(id: 1, value: 2)]))
            for value in 1...3 { h.send(1, .peaks([PeakSample(id: 1, value: Double(value))])) }
            #expect(h.dropped(.byteLimit) == dropped, "budget \(budget)")
            #expect((h.value("app_g_peak{process=\"app\",pid=\"1\",k=\"a\"}") != nil) == (dropped == "0"))
            // Retired with its gauge, the peak gives its bytes back: both fit again (or the peak of the
            // new gauge is refused again, one more series dropped).
            h.send(1, .retire([1]))
            h.send(1, .declare([gauge(2)]))
            h.send(1, .values([ValueUpdate(id: 2, value: 2)]))
            h.send(1, .peaks([PeakSample(id: 2, value: 3)]))
            #expect(h.dropped(.byteLimit) == (dropped == "0" ? "0" : "2"))
            #expect(h.value("app_g{process=\"app\",pid=\"1\",k=\"a\"}") == "2")
        }
    }

    /// Every family's help text is held once, and counts against the overall budget: a client cannot
    /// fill memory with 4 KiB help texts on series that are cheap otherwise.
    @Test func helpTextsCountAgainstTheOverallBudget() {
        let help = String(repeating: "h", count: 4_000)
        let gauge = { (id: UInt32, name: String, value: String) in
            SeriesDeclaration(id: id, type: .gauge, name: name, help: help, labels: [Label("k", value)])
        }
        // Each gauge: "app_gN" (6) + `k="…"` (5) + `process="app",pid="1"` (21) + 32; a new family's help
        // once.
        let series = 6 + 5 + 21 + 32
        var limits = RegistryLimits()
        limits.maxLabelBytes = 2 * (series + 4_000) + series + Registry.connectionLineBytes(connectionLabels: 21)
        let h = Harness(limits: limits)
        h.connect(1, process: "app", declaring: (0..<2).map { gauge(UInt32(10 + $0), "app_g\($0)", "a") })
        #expect(h.value("taskwatch_series") == "2")
        // A series of a family that exists brings no help of its own: it fits where a new family does not.
        h.send(1, .declare([gauge(21, "app_g0", "b"), gauge(12, "app_g2", "a")]))
        #expect(h.dropped(.byteLimit) == "1")
        #expect(h.value("taskwatch_series") == "3")
        // A family gone gives its help back: the new family refused first, which waits for room since
        // (`app_g2`), takes it, ahead of one declared after the retire.
        h.send(1, .retire([11]))
        h.send(1, .declare([gauge(22, "app_g8", "a")]))
        #expect(h.dropped(.byteLimit) == "2")
        #expect(h.value("taskwatch_series") == "3")
        h.send(1, .values([ValueUpdate(id: 12, value: 1)]))
        #expect(h.value("app_g2{process=\"app\",pid=\"1\",k=\"a\"}") == "1")
    }

    /// A hello's labels go on every line of the connection: past `Wire.maxHelloLabelBytes` of names and
    /// values the hello is refused as `too_long`, and the connection can do nothing until it sends one
    /// that fits.
    @Test func aHelloWithTooManyLabelBytesIsRefused() {
        let h = Harness()
        h.open(1, pid: 1)
        // Three labels of a 4-byte name each (the wire allows 4 KiB a value).
        let fits = Wire.maxHelloLabelBytes - 3 * 4 - 2 * 4_000
        let labels = { (last: Int) in
            [
                Label("big1", String(repeating: "v", count: 4_000)),
                Label("big2", String(repeating: "v", count: 4_000)),
                Label("big3", String(repeating: "v", count: last)),
            ]
        }
        h.hello(1, labels: labels(fits + 1))
        #expect(h.rejected(.tooLong) == "1")
        h.send(1, .declare([tasksGauge]))
        #expect(h.rejected(.noHello) == "1")
        h.hello(1, labels: labels(fits))
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 3)]))
        #expect(h.rejected(.tooLong) == "1")
        #expect(h.value("taskwatch_series") == "1")
    }

    /// A `_peak` refused at the connection's cap is one series dropped, however many peaks entries
    /// follow, and it is added once a series goes away.
    @Test func aPeakRefusedAtALimitIsCountedOnceAndAddedWhenRoomFrees() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 2
        let h = Harness(limits: limits)
        h.connect(1, process: "app", declaring: Array(threeGauges.prefix(2)))
        h.send(1, .values([ValueUpdate(id: 100, value: 1), ValueUpdate(id: 101, value: 1)]))
        for value in 1...5 { h.send(1, .peaks([PeakSample(id: 100, value: Double(value))])) }
        #expect(h.dropped(.clientLimit) == "1")
        #expect(!h.text().contains("app_g_peak"))
        h.send(1, .retire([101]))
        h.send(1, .peaks([PeakSample(id: 100, value: 9)]))
        #expect(h.value("app_g_peak{process=\"app\",pid=\"1\",i=\"0\"}") == "9")
        #expect(h.dropped(.clientLimit) == "1")
    }

    @Test func retiringAGaugeRetiresItsPeak() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 3)]))
        h.send(1, .peaks([PeakSample(id: 1, value: 9)]))
        #expect(h.value("swift_tasks_peak{process=\"app\",pid=\"10\",task=\"default\"}") == "9")
        #expect(h.value("taskwatch_series") == "2")
        h.send(1, .retire([1]))
        #expect(!h.text().contains("swift_tasks{"))
        #expect(!h.text().contains("swift_tasks_peak{"))
        #expect(h.value("taskwatch_series") == "0")
        // Declared again: a new peak series follows its samples.
        h.send(1, .declare([tasksGauge]))
        h.send(1, .values([ValueUpdate(id: 1, value: 2)]))
        h.send(1, .peaks([PeakSample(id: 1, value: 4)]))
        #expect(h.value("swift_tasks_peak{process=\"app\",pid=\"10\",task=\"default\"}") == "4")
    }

    /// A client that keeps declaring and retiring series (a label value per request, say) never runs
    /// into its cap, and the series it keeps, of every kind, stay right through the table's rebuilds.
    @Test func declaringAndRetiringForeverStaysWithinTheCap() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 8
        let h = Harness(limits: limits)
        let kept = [
            tasksGauge,
            SeriesDeclaration(id: 3, type: .histogram, name: "app_lag_seconds", help: "", bounds: [0.1, 1]),
            createdCounter,
        ]
        h.connect(1, process: "app", declaring: kept)
        for round in 0..<2_000 {
            let id = UInt32(1_000 + round)
            let churned = SeriesDeclaration(
                id: id, type: .gauge, name: "app_request_bytes", help: "", labels: [Label("request", "\(round)")])
            h.send(1, .declare([churned]))
            h.send(1, .values([ValueUpdate(id: id, value: 1), ValueUpdate(id: 1, value: Double(round))]))
            h.send(1, .values([ValueUpdate(id: 2, value: Double(round))]))
            h.send(1, .histograms([HistogramUpdate(id: 3, buckets: [UInt64(round), 1, 0], sum: 0.5)]))
            h.send(1, .peaks([PeakSample(id: 1, value: Double(round + 1))]))
            if round < 1_999 { h.send(1, .retire([id])) }
        }
        #expect(h.dropped(.clientLimit) == "0")
        #expect(h.value("taskwatch_series") == "5", "3 kept, the peak and the last churned series")
        let pid = "process=\"app\",pid=\"1\""
        #expect(h.value("swift_tasks{\(pid),task=\"default\"}") == "1999")
        #expect(h.value("swift_tasks_peak{\(pid),task=\"default\"}") == "2000")
        #expect(h.value("swift_tasks_created_total{\(pid),task=\"default\"}") == "1999")
        #expect(h.value("app_lag_seconds_bucket{\(pid),le=\"0.1\"}") == "1999")
        #expect(h.value("app_lag_seconds_count{\(pid)}") == "2000")
        #expect(h.value("app_request_bytes{\(pid),request=\"1999\"}") == "1")
        #expect(h.value("app_request_bytes{\(pid),request=\"1998\"}") == nil)
        #expect(h.rejected(.unknownSeries) == "0")
    }

    @Test func retiredSeriesGiveBackTheirPlacesUnderTheDaemonsCapsAndBudget() {
        var limits = RegistryLimits()
        limits.maxSeries = 3
        // Each `app_g{i="…"}` takes 5 + 5 + 21 (`process="app",pid="1"`; "oth" and pid 2 for the
        // other) + 32 bytes of the budget, and the family's help is held once.
        let help = "Reported by a TaskWatch client without help text.".utf8.count
        limits.maxLabelBytes = 3 * (5 + 5 + 21 + 32) + help + 2 * Registry.connectionLineBytes(connectionLabels: 21)
        let h = Harness(limits: limits)
        h.connect(1, process: "app", declaring: threeGauges)
        #expect(h.dropped(.byteLimit) == "0")
        h.send(1, .retire([100, 101]))
        h.connect(2, process: "oth", declaring: Array(threeGauges.prefix(2)))
        #expect(h.dropped(.globalLimit) == "0")
        #expect(h.dropped(.byteLimit) == "0")
        #expect(h.value("taskwatch_series") == "3")
    }

    /// A release that adds a dimension to a metric (a swift-metrics counter `app_jobs`), started while
    /// the previous release's process still holds the name: running, or in its grace period after a
    /// crash. The new declaration was refused as a `conflict`, rightly, but for good: the client library
    /// declares once per connection, so the metric stayed missing after the old series went, until the
    /// new process reconnected. It is admitted once the family goes, and counted once.
    @Test func aDeclarationRefusedAsAConflictIsAdmittedOnceTheFamilyGoes() {
        let h = Harness()
        let old = SeriesDeclaration(id: 1, type: .counter, name: "app_jobs", help: "", labels: [Label("queue", "a")])
        let new = SeriesDeclaration(
            id: 7, type: .counter, name: "app_jobs", help: "", labels: [Label("priority", "high"), Label("queue", "a")])
        // A gauge of the counter's OpenMetrics family name clashes on a derived name.
        let gauge = SeriesDeclaration(id: 8, type: .gauge, name: "app_jobs", help: "", labels: [])
        let kept = SeriesDeclaration(id: 9, type: .gauge, name: "swift_tasks", help: "", labels: [])
        h.connect(1, process: "old", declaring: [old])
        h.send(1, .values([ValueUpdate(id: 1, value: 5)]))
        h.connect(2, process: "new", declaring: [new, gauge, kept])
        h.send(2, .values([ValueUpdate(id: 7, value: 3), ValueUpdate(id: 8, value: 1)]))
        #expect(h.dropped(.conflict) == "3")
        let shown = "app_jobs_total{process=\"new\",pid=\"2\",priority=\"high\",queue=\"a\"}"
        #expect(h.value(shown) == nil)

        // The old process crashes: its series stay through the grace period, then go.
        h.registry.connectionClosed(ConnectionID(1))
        h.send(2, .values([ValueUpdate(id: 7, value: 4)]))
        #expect(h.value(shown) == nil)
        h.clock.advance(seconds: 31)
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 7, value: 5)]))
        #expect(h.value(shown) == "5")
        #expect(h.value("app_jobs_total{process=\"old\",pid=\"1\",queue=\"a\"}") == nil)
        // First come, first served among the waiting ones: the gauge now clashes with the new counter.
        #expect(h.value("app_jobs{process=\"new\",pid=\"2\"}") == nil)
        #expect(h.dropped(.conflict) == "3", "counted once, when first refused")
        #expect(h.rejected(.unknownSeries) == "0")

        // Retired while it is kept, a declaration is forgotten: the name freed later admits nothing.
        h.send(2, .retire([8]))
        h.send(2, .retire([7]))
        h.send(2, .values([ValueUpdate(id: 8, value: 2)]))
        #expect(h.value("app_jobs{process=\"new\",pid=\"2\"}") == nil)
        #expect(h.value("swift_tasks{process=\"new\",pid=\"2\"}") == nil, "the library's names never free")
        #expect(h.value("taskwatch_series") == "0")
    }

    /// The same when the old process retires its series (a swift-metrics `destroy`) or says goodbye, and
    /// a connection that closes forgets what it kept.
    @Test func aDeclarationRefusedAsAConflictIsAdmittedOnceTheOtherRetiresIt() {
        let h = Harness()
        let counter = SeriesDeclaration(id: 1, type: .counter, name: "app_jobs", help: "", labels: [])
        let histogram = SeriesDeclaration(id: 2, type: .histogram, name: "app_jobs", help: "", labels: [], bounds: [1])
        h.connect(1, process: "one", declaring: [counter])
        h.connect(2, process: "two", declaring: [histogram])
        h.connect(3, process: "three", declaring: [histogram])
        #expect(h.dropped(.conflict) == "2")
        h.registry.connectionClosed(ConnectionID(3))
        h.send(1, .retire([1]))
        // Tried again at the tick.
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .histograms([HistogramUpdate(id: 2, buckets: [1, 0], sum: 0.5)]))
        #expect(h.value("app_jobs_count{process=\"two\",pid=\"2\"}") == "1")
        #expect(h.value("taskwatch_series") == "1")
        h.send(2, .goodbye)
        h.registry.connectionClosed(ConnectionID(2))
        h.send(1, .declare([counter]))
        h.send(1, .values([ValueUpdate(id: 1, value: 2)]))
        #expect(h.value("app_jobs_total{process=\"one\",pid=\"1\"}") == "2")
        #expect(h.dropped(.conflict) == "2")
        #expect(h.registry.conflicted == (0, 0))
    }

    /// Kept declarations are bounded by the connection's byte limit, and nothing of them is left once
    /// their connection closed or they were admitted.
    @Test func declarationsKeptAfterAConflictAreBoundedAndLeaveNothingBehind() {
        var limits = RegistryLimits()
        let one = SeriesDeclaration(id: 0, type: .gauge, name: "app_g", help: "", labels: [Label("i", "0")])
        limits.maxLabelBytesPerClient = 1_000 * PendingDeclaration.keptCost(of: one, names: ["app_g"])
        let h = Harness(limits: limits)
        h.connect(1, process: "one", declaring: [SeriesDeclaration(id: 1, type: .counter, name: "app_g", help: "")])
        let many = (0..<2_000).map {
            SeriesDeclaration(id: UInt32(10 + $0), type: .gauge, name: "app_g", help: "", labels: [Label("i", "\($0)")])
        }
        h.connect(2, process: "two", declaring: many)
        #expect(h.dropped(.conflict) == "2000")
        let kept = h.registry.conflicted
        #expect(kept.bytes > 0 && kept.bytes <= limits.maxLabelBytesPerClient)
        h.connect(3, process: "three", declaring: Array(many.prefix(10)))
        h.registry.connectionClosed(ConnectionID(3))
        #expect(h.registry.conflicted == kept, "a connection that closed forgets what it kept")
        h.send(1, .retire([1]))
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 10, value: 1)]))
        #expect(h.value("app_g{process=\"two\",pid=\"2\",i=\"0\"}") == "1")
        #expect(h.registry.conflicted == (0, 0))
        #expect(h.value("taskwatch_series") == "1000", "those kept, within the bound, are admitted")
    }

    /// Declarations kept after a conflict are tried again at the tick, `conflictRetryBatch` at most, not
    /// at each frame after their name's family went: one process keeping 10,000 refused on one name
    /// and freeing the name frame after frame had every small frame try them all (21 ms each in the
    /// release build). Freeing the name again while they are due queues nothing more, and each is
    /// tried in turn, oldest first.
    @Test func declarationsKeptAfterAConflictAreTriedAtTheTickABatchAtATime() {
        var limits = RegistryLimits()
        limits.maxLabelBytesPerClient = 16 << 20
        let h = Harness(limits: limits)
        let holder = SeriesDeclaration(id: 1, type: .counter, name: "app_g", help: "")
        let count = 2 * Registry.conflictRetryBatch
        // Each with labels of its own name: one family each, all on the one name.
        let kept = (0..<count).map { index in
            let label = Label("l\(index)", "v")
            return SeriesDeclaration(id: UInt32(10 + index), type: .gauge, name: "app_g", help: "", labels: [label])
        }
        h.connect(1, process: "one", declaring: [holder])
        h.connect(2, process: "two", declaring: kept)
        #expect(h.dropped(.conflict) == "\(count)")
        for _ in 0..<50 {
            h.send(1, .retire([1]))
            h.send(1, .declare([holder]))
        }
        #expect(h.registry.conflictRetries == (0, count), "none tried between ticks, each queued once")
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.registry.conflictRetries == (Registry.conflictRetryBatch, count - Registry.conflictRetryBatch))
        // The holder declared the name again before the tick: those tried are in conflict again, kept.
        h.send(1, .values([ValueUpdate(id: 1, value: 3)]))
        #expect(h.value("app_g_total{process=\"one\",pid=\"1\"}") == "3")
        #expect(h.value("taskwatch_series") == "1")
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.registry.conflictRetries == (count, 0), "the rest at the next tick")
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.registry.conflictRetries.tries == count, "nothing due, nothing tried")
        h.registry.connectionClosed(ConnectionID(2))
        #expect(h.registry.conflicted == (0, 0))
    }

    /// The values a client reports for a declaration kept after a conflict are counted as dropped, as
    /// `conflict`, for as long as the other family holds the name: counted once as a dropped series, a
    /// lasting clash looked resolved five minutes after it began. Not for one dropped for good.
    @Test func valuesOfADeclarationKeptAfterAConflictAreCountedAsDropped() {
        let h = Harness()
        let old = SeriesDeclaration(id: 1, type: .counter, name: "app_jobs", help: "", labels: [])
        let new = SeriesDeclaration(id: 2, type: .gauge, name: "app_jobs", help: "", labels: [])
        let library = SeriesDeclaration(id: 3, type: .counter, name: "swift_tasks", help: "", labels: [])
        h.connect(1, process: "old", declaring: [old])
        h.connect(2, process: "new", declaring: [new, library])
        #expect(h.dropped(.conflict) == "2")
        for value in 1...3 {
            h.send(2, .values([ValueUpdate(id: 2, value: Double(value)), ValueUpdate(id: 3, value: 1)]))
        }
        let droppedValues = "taskwatch_values_dropped_total{reason=\"conflict\"}"
        #expect(h.value(droppedValues) == "3", "the kept one's, not those of the one dropped for good")
        h.send(1, .retire([1]))
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 2, value: 4)]))
        #expect(h.value("app_jobs{process=\"new\",pid=\"2\"}") == "4")
        #expect(h.value(droppedValues) == "3")
    }
}
