import CTaskWatchSocket
import CoreMetrics
import Foundation
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatch
@testable import TaskWatchMetrics

/// A real `taskwatchd` (socket under /tmp, a free loopback port) and a reporter of this process sending
/// to it, with a factory on the process-wide series table registered as its source.
final class ReportingToADaemon {
    let daemon: DaemonProcess
    let reporter: Reporter
    let factory = TaskWatchMetricsFactory()

    init() throws {
        daemon = try DaemonProcess()
        var configuration = Configuration(environment: [:])
        configuration.socketPath = daemon.socketPath
        configuration.processName = "metrics-test"
        configuration.interval = .milliseconds(20)
        reporter = Reporter(configuration: configuration)
        TaskWatch.register(source: factory)
        reporter.start()
    }

    /// Stops reporting; the daemon is killed when this is released.
    func stop() {
        TaskWatch.unregister(source: factory)
        reporter.stop()
    }

    /// The daemon's count of series dropped for `reason`, 0 when it has none.
    func dropped(_ reason: String) -> Double {
        daemon.value("taskwatch_series_dropped_total", ["reason": reason]) ?? 0
    }

    /// The daemon's count of frames refused for `reason`, 0 when it has none.
    func rejected(_ reason: String) -> Double {
        daemon.value("taskwatch_messages_rejected_total", ["reason": reason]) ?? 0
    }
}

/// What the daemon makes of the factory's series: the point of these tests is its reaction.
@Suite(.serialized) struct MetricsDaemonTests {
    /// One overflowing counter made the daemon refuse every values frame (`invalid_value`), and with
    /// them every series of the process.
    @Test func anOverflowingCounterFreezesNothing() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let name = unique("overflow")
        let huge = setup.factory.makeCounter(label: name, dimensions: [])
        huge.increment(by: .max)
        huge.increment(by: .max)
        let float = setup.factory.makeFloatingPointCounter(label: name + "_float", dimensions: [])
        float.increment(by: .greatestFiniteMagnitude)
        float.increment(by: .greatestFiniteMagnitude)
        setup.factory.makeCounter(label: name + "_marker", dimensions: []).increment(by: 1)

        #expect(eventually { setup.daemon.value(name + "_marker_total", [:]) == 1 }, "values frames refused")
        #expect(setup.daemon.value(name + "_total", [:]) == Double(Int64.max))
        #expect(setup.daemon.value(name + "_float_total", [:]) == .greatestFiniteMagnitude)
        #expect(setup.rejected("invalid_value") == 0)
    }

    /// The daemon takes dimensions in any order as one series: a second declaration was dropped as
    /// `duplicate_series`, and its values lost.
    @Test func dimensionsInAnotherOrderReachTheDaemonAsOneSeries() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let name = unique("ordered")
        setup.factory.makeCounter(label: name, dimensions: [("b", "2"), ("a", "1")]).increment(by: 2)
        setup.factory.makeCounter(label: name, dimensions: [("a", "1"), ("b", "2")]).increment(by: 3)
        #expect(eventually { setup.daemon.value(name + "_total", ["a": "1", "b": "2"]) == 5 })
        #expect(setup.dropped("duplicate_series") == 0)
    }

    /// Counter and floating-point counter, meter and plain recorder, timer and aggregating recorder:
    /// each pair is one series on `/metrics`, declared once. A name of another type is refused by the
    /// factory before the daemon sees it.
    @Test func handlersOfOneSeriesAreDeclaredOnce() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let factory = setup.factory
        let name = unique("shared")
        factory.makeCounter(label: name, dimensions: [("k", "v")]).increment(by: 3)
        factory.makeFloatingPointCounter(label: name, dimensions: [("k", "v")]).increment(by: 1.5)
        factory.makeMeter(label: name + "_depth", dimensions: []).set(Int64(4))
        factory.makeRecorder(label: name + "_depth", dimensions: [], aggregate: false).record(Int64(7))
        factory.makeTimer(label: name + "_seconds", dimensions: []).recordNanoseconds(1_000_000)
        factory.makeRecorder(label: name + "_seconds", dimensions: [], aggregate: true).record(0.002)
        let dropped = factory.seriesDropped
        let processDropped = TaskWatch.seriesDropped
        factory.makeMeter(label: name, dimensions: [("k", "v")]).set(Int64(1))
        #expect(factory.seriesDropped == dropped + 1)
        #expect(TaskWatch.seriesDropped >= processDropped + 1)
        // The refusal shows on `/metrics`, where an operator sees it.
        #expect(
            eventually {
                (setup.daemon.value("swift_taskwatch_series_dropped_total", ["process": "metrics-test"]) ?? 0)
                    >= Double(processDropped + 1)
            })

        #expect(
            eventually {
                setup.daemon.value(name + "_total", ["k": "v"]) == 4.5
                    && setup.daemon.value(name + "_depth", [:]) == 7
                    && setup.daemon.value(name + "_seconds_count", [:]) == 2
            })
        #expect(setup.dropped("duplicate_series") == 0)
        #expect(setup.dropped("conflict") == 0)
    }

    /// `le` on a histogram and a label value past the protocol's limit made the series vanish.
    @Test func validDimensionsReachTheDaemon() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let name = unique("dimensions")
        setup.factory.makeTimer(label: name + "_seconds", dimensions: [("le", "fast")]).recordNanoseconds(1_000)
        let long = String(repeating: "p", count: Wire.maxTextLength + 100)
        setup.factory.makeCounter(label: name, dimensions: [("path", long)]).increment(by: 1)
        let cut = String(repeating: "p", count: Wire.maxTextLength)
        #expect(
            eventually {
                setup.daemon.value(name + "_seconds_count", ["exported_le": "fast"]) == 1
                    && setup.daemon.value(name + "_total", ["path": cut]) == 1
            })
        #expect(setup.dropped("reserved_label") == 0)
    }

    /// `le` and `quantile` dimensions on any type make an exposition promtool accepts: a counter or gauge
    /// kept `le` (\"non-histogram metrics should not have \"le\" label\") and every type kept `quantile`.
    @Test func leAndQuantileDimensionsPassPromtool() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let name = unique("reserved")
        let dimensions = [("le", "1"), ("quantile", "0.5")]
        setup.factory.makeCounter(label: name + "_hits", dimensions: dimensions).increment(by: 1)
        setup.factory.makeMeter(label: name + "_level", dimensions: dimensions).set(Int64(2))
        setup.factory.makeTimer(label: name + "_seconds", dimensions: dimensions).recordNanoseconds(1_000)
        let exported = ["exported_le": "1", "exported_quantile": "0.5"]
        #expect(
            eventually {
                setup.daemon.value(name + "_hits_total", exported) == 1
                    && setup.daemon.value(name + "_level", exported) == 2
                    && setup.daemon.value(name + "_seconds_count", exported) == 1
            })
        // These families alone: other tests' series of this process are not this test's to judge.
        var families: [String] = []
        var keep = false
        for line in try setup.daemon.metrics().split(separator: "\n") {
            if line.hasPrefix("# HELP ") { keep = line.dropFirst(7).hasPrefix(name) }
            if keep { families.append(String(line)) }
        }
        #expect(families.count >= 10)
        try expectValidExposition(Data((families.joined(separator: "\n") + "\n").utf8))
    }

    /// At the cap, the client and the daemon count the same: every monitor's `swift_tasks_peak`, which
    /// the daemon adds, takes a place on both sides, so the daemon refuses nothing the process believes
    /// it reports. Fills the process-wide table with series of the monitors' priority to 12 places short
    /// of its cap (two monitors' series without their peaks), makes monitors until one is refused, and
    /// empties the table again: at most two monitors stay, as monitors do, so later tests' reports keep
    /// their size.
    @Test func atTheCapTheDaemonRefusesNothingTheProcessReports() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let table = SeriesTable.shared
        let name = unique("filler")
        var fillers: [SeriesID] = []
        defer { for id in fillers { table.retire(id) } }
        while fillers.count < SeriesTable.defaultLimit {
            let filler = SeriesDescriptor(
                name: name, help: "", type: .counter, labels: [Label("n", "\(fillers.count)")])
            guard let id = table.declare(all: [filler], priority: .monitor)?.first else { break }
            fillers.append(id)
        }
        #expect(table.liveCount == SeriesTable.defaultLimit)
        for id in fillers.suffix(12) { table.retire(id) }
        fillers.removeLast(12)
        var monitors: [String] = []
        while monitors.count < 3 {
            let monitor = TaskMonitor(unique("cap"))
            guard MonitorRegistry.shared.entries().last(where: { $0.name == monitor.name })?.series != nil else {
                break
            }
            monitors.append(monitor.name)
        }
        #expect(!monitors.isEmpty)

        let arrived = eventually(timeout: .seconds(20)) {
            let samples = setup.daemon.samples()
            let peaks = Set(samples.filter { $0.name == "swift_tasks_peak" }.compactMap { $0.labels["task"] })
            return monitors.allSatisfy(peaks.contains)
                && setup.daemon.value("taskwatch_series", [:]) == Double(table.liveCount)
        }
        #expect(arrived, "a monitor's series or its peak was refused")
        #expect(setup.dropped("client_limit") == 0)
    }

    /// A release that adds a dimension to a metric, started while the previous release's process still
    /// holds the name (here it crashed, and its series stay for the daemon's grace period of 2 s): the
    /// daemon refused the new series as a `conflict` for the new process's whole connection, so the
    /// metric stayed missing long after the old series had gone. It shows once they have.
    @Test func aMetricWhoseLabelsChangedShowsOnceTheOldProcessIsGone() throws {
        let setup = try ReportingToADaemon()
        defer { setup.stop() }
        let name = unique("jobs")
        // The previous release, as a raw connection of this process under another process name.
        let old = tw_seqpacket_socket()
        #expect(old >= 0 && tw_unix_connect(old, setup.daemon.socketPath) == 0)
        let frames: [Frame] = [
            .hello(
                Hello(
                    claimedPID: UInt32(getpid()), intervalNanoseconds: 10_000_000, process: "old-release",
                    clientVersion: "test", labels: [])),
            .declare([SeriesDeclaration(id: 1, type: .counter, name: name, help: "", labels: [Label("queue", "a")])]),
            .values([ValueUpdate(id: 1, value: 5)]),
        ]
        for frame in frames {
            for bytes in FrameEncoder.encode(frame) {
                #expect(bytes.withUnsafeBytes { tw_send_message(old, $0.baseAddress, $0.count) } == bytes.count)
            }
        }
        #expect(eventually { setup.daemon.value(name + "_total", ["process": "old-release"]) == 5 })

        let counter = setup.factory.makeCounter(label: name, dimensions: [("queue", "a"), ("priority", "high")])
        counter.increment(by: 3)
        #expect(eventually { setup.dropped("conflict") == 1 })
        close(old)  // a crash: no goodbye
        let labels = ["process": "metrics-test", "priority": "high", "queue": "a"]
        #expect(eventually(timeout: .seconds(15)) { setup.daemon.value(name + "_total", labels) == 3 })
        #expect(setup.daemon.value(name + "_total", ["process": "old-release"]) == nil)
        #expect(setup.dropped("conflict") == 1)
        setup.factory.destroyCounter(counter)
    }
}
