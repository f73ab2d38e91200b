import CTaskWatchSocket
import CoreMetrics
import Foundation
import Metrics
import Synchronization
import TaskWatchWire
import Testing

@testable import TaskWatch
@testable import TaskWatchMetrics

/// Collects one report from `factory` as the reporter would.
func collect(_ factory: TaskWatchMetricsFactory) -> ReportBuilder {
    var report = ReportBuilder()
    factory.collect(into: &report)
    return report
}

extension ReportBuilder {
    func value(of id: SeriesID) -> Double? { values.last { $0.id == id.rawValue }?.value }
    func histogram(of id: SeriesID) -> HistogramUpdate? { histograms.last { $0.id == id.rawValue } }
}

func seriesID(_ handler: AnyObject) -> SeriesID? {
    (handler as? any ReportingHandler)?.id
}

func unique(_ name: String) -> String { "\(name)_\(UUID().uuidString.prefix(8))" }

@Suite struct MetricsFactoryTests {
    let factory = TaskWatchMetricsFactory()

    @Test func countersAccumulateAndReset() throws {
        let handler = factory.makeCounter(label: unique("requests"), dimensions: [("method", "GET")])
        let id = try #require(seriesID(handler))
        handler.increment(by: 3)
        handler.increment(by: 4)
        handler.increment(by: -2)
        #expect(collect(factory).value(of: id) == 7)
        // A reset does not lower the reported total: the daemon refuses a counter that goes down.
        handler.reset()
        handler.increment(by: 1)
        #expect(collect(factory).value(of: id) == 8)

        let float = factory.makeFloatingPointCounter(label: unique("bytes"), dimensions: [])
        float.increment(by: 1.5)
        float.increment(by: 2.25)
        #expect(collect(factory).value(of: try #require(seriesID(float))) == 3.75)
    }

    @Test func metersAndPlainRecordersAreGauges() throws {
        let meter = factory.makeMeter(label: unique("queue"), dimensions: [])
        meter.set(Int64(10))
        meter.increment(by: 2.5)
        meter.decrement(by: 0.5)
        #expect(collect(factory).value(of: try #require(seriesID(meter))) == 12)

        let recorder = factory.makeRecorder(label: unique("temperature"), dimensions: [], aggregate: false)
        recorder.record(Int64(5))
        recorder.record(21.5)
        #expect(collect(factory).value(of: try #require(seriesID(recorder))) == 21.5)
    }

    @Test func aggregatingRecordersAndTimersAreHistograms() throws {
        let recorder = factory.makeRecorder(label: unique("sizes"), dimensions: [], aggregate: true)
        recorder.record(0.003)
        recorder.record(Int64(7))
        recorder.record(100.0)
        let sizesID = try #require(seriesID(recorder))
        let sizes = try #require(collect(factory).histogram(of: sizesID))
        #expect(sizes.buckets.count == HistogramBounds.prometheusDefault.count + 1)
        #expect(sizes.buckets.reduce(0, +) == 3)
        #expect(sizes.buckets.first == 1)
        #expect(sizes.buckets.last == 1)
        #expect(sizes.sum == 107.003)

        let timer = factory.makeTimer(label: unique("latency"), dimensions: [])
        timer.recordNanoseconds(2_000_000)
        timer.recordNanoseconds(90_000_000_000)
        let latencyID = try #require(seriesID(timer))
        let latency = try #require(collect(factory).histogram(of: latencyID))
        #expect(latency.buckets.count == HistogramBounds.taskDuration.count + 1)
        #expect(latency.buckets[HistogramBounds.bucket(of: 0.002, in: HistogramBounds.taskDuration)] == 1)
        #expect(latency.buckets.last == 1)
        #expect(abs(latency.sum - 90.002) < 1e-9)
    }

    @Test func sameSeriesSharesAHandlerAndDestroyRetiresIt() throws {
        let name = unique("shared")
        let first = factory.makeCounter(label: name, dimensions: [("a", "1")])
        let second = factory.makeCounter(label: name, dimensions: [("a", "1")])
        #expect(first === second)
        let other = factory.makeCounter(label: name, dimensions: [("a", "2")])
        #expect(first !== other)
        let id = try #require(seriesID(first))
        factory.destroyCounter(first)
        #expect(collect(factory).value(of: id) != nil)
        factory.destroyCounter(second)
        #expect(collect(factory).value(of: id) == nil)
        let live = SeriesTable.shared.liveDeclarations
        #expect(!live.contains { $0.id == id.rawValue })
    }

    @Test func namesAndDimensionsAreSanitized() {
        #expect(
            TaskWatchMetricsFactory.labels(
                [("http.method", "GET"), ("process", "x"), ("pid", "1"), ("http-method", "2")], for: .counter)
                == [Label("exported_pid", "1"), Label("exported_process", "x"), Label("http_method", "GET")])
        let handler = factory.makeCounter(label: unique("9 bad.name"), dimensions: [])
        let id = seriesID(handler)!
        let declaration = SeriesTable.shared.liveDeclarations.first { $0.id == id.rawValue }
        #expect(declaration.map { Names.isValidMetricName($0.name) } == true)
        #expect(declaration?.name.hasPrefix("_9_bad_name_") == true)
    }

    /// A counter made again by one thread while another destroys its last reference: the daemon must
    /// get the retirement first, or it drops the new declaration as a duplicate of the old one and then
    /// retires the old, and the series vanishes until the process reconnects.
    @Test func aSeriesMadeWhileItIsDestroyedIsRetiredBeforeItIsDeclaredAgain() throws {
        let table = SeriesTable(limit: 10)
        let reader = ObjectIdentifier(table)
        _ = table.startOver(for: reader)
        let name = unique("raced")
        let factoryBox = Mutex<TaskWatchMetricsFactory?>(nil)
        let made = Mutex<(any CounterHandler)?>(nil)
        let factory = TaskWatchMetricsFactory(
            declare: { table.declare(all: $0) },
            retire: { id in
                // Another thread makes the same counter now, and gets as far as it can within 500 ms.
                let factory = factoryBox.withLock { $0 }!
                let thread = Thread {
                    let handler = factory.makeCounter(label: name, dimensions: [])
                    made.withLock { $0 = handler }
                }
                thread.start()
                let deadline = ContinuousClock.now + .milliseconds(500)
                while made.withLock({ $0 == nil }), ContinuousClock.now < deadline { usleep(1_000) }
                table.retire(id)
            })
        factoryBox.withLock { $0 = factory }
        // The factory's retire closure holds the box that holds the factory (LeakSanitizer's cycle).
        defer { factoryBox.withLock { $0 = nil } }
        let first = factory.makeCounter(label: name, dimensions: [])
        factory.destroyCounter(first)
        let deadline = ContinuousClock.now + .seconds(10)
        while made.withLock({ $0 == nil }), ContinuousClock.now < deadline { usleep(1_000) }
        let second = try #require(made.withLock { $0 })
        let secondID = try #require(seriesID(second))

        // What the daemon makes of the changes, in order: a declaration of a name and labels it holds
        // under another id is dropped.
        var live: [String: UInt32] = [:]
        var dropped = 0
        for change in try #require(table.takeChanges(for: reader)) {
            switch change {
            case .declare(let declaration):
                if live[declaration.name] != nil { dropped += 1 } else { live[declaration.name] = declaration.id }
            case .retire(let id):
                live = live.filter { $0.value != id }
            }
        }
        #expect(dropped == 0)
        #expect(live[name] == secondID.rawValue)
        #expect(collect(factory).value(of: secondID) != nil)
        factory.destroyCounter(second)
        table.forget(reader)
    }

    @Test func pastTheCapHandlersAreDroppedAndCounted() {
        // A table of its own: filling the process-wide one would starve tests running alongside.
        let table = SeriesTable(limit: 5)
        let factory = TaskWatchMetricsFactory(declare: { table.declare(all: $0) }, retire: table.retire)
        let room = 5
        let handlers = (0..<room).map { _ in factory.makeCounter(label: unique("fill"), dimensions: []) }
        let refused = factory.makeCounter(label: unique("over"), dimensions: [])
        #expect(seriesID(refused) == nil)
        #expect(factory.seriesDropped == 1)
        refused.increment(by: 1)
        for handler in handlers { factory.destroyCounter(handler) }
        #expect(seriesID(factory.makeCounter(label: unique("after"), dimensions: [])) != nil)
    }
}

/// Through `MetricsSystem` and a real reporter connection: the app's metrics arrive as frames.
@Test func metricsTravelThroughTheReporterConnection() async throws {
    let factory = TaskWatchMetricsFactory()
    TaskWatch.register(source: factory)
    defer { TaskWatch.unregister(source: factory) }

    let directory = NSTemporaryDirectory() + "taskwatch-metrics-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/ingest.sock"
    let listener = tw_seqpacket_socket()
    #expect(tw_unix_bind(listener, path) == 0)
    #expect(listen(listener, 4) == 0)
    defer { close(listener) }

    var configuration = Configuration(environment: [:])
    configuration.socketPath = path
    configuration.interval = .milliseconds(5)
    let reporter = Reporter(configuration: configuration)
    reporter.start()
    defer { reporter.stop() }

    let name = unique("orders")
    Counter(label: name, dimensions: [("kind", "retail")], factory: factory).increment(by: 5)
    Recorder(label: name + "_size", factory: factory).record(3)
    Timer(label: name + "_seconds", factory: factory).recordNanoseconds(1_500_000)

    var client: Int32 = -1
    var frames: [Frame] = []
    var buffer = [UInt8](repeating: 0, count: Wire.maxFrameSize)
    func find(_ metric: String) -> UInt32? {
        for case .declare(let list) in frames {
            if let found = list.first(where: { $0.name == metric }) { return found.id }
        }
        return nil
    }
    let deadline = ContinuousClock.now + .seconds(10)
    var counterValue: Double?
    var sizeSum: Double?
    var timerSum: Double?
    while ContinuousClock.now < deadline, counterValue == nil || sizeSum == nil || timerSum == nil {
        if client < 0 { client = accept(listener, nil, nil) }
        if client >= 0 {
            while true {
                var truncated: Int32 = 0
                let count = buffer.withUnsafeMutableBytes {
                    tw_recv_message(client, $0.baseAddress, $0.count, &truncated)
                }
                if count <= 0 { break }
                frames.append(try FrameDecoder.decode(Array(buffer[0..<count])))
            }
        }
        if let id = find(name) {
            for case .values(let list) in frames { counterValue = list.last { $0.id == id }?.value ?? counterValue }
        }
        if let id = find(name + "_size") {
            for case .histograms(let list) in frames { sizeSum = list.last { $0.id == id }?.sum ?? sizeSum }
        }
        if let id = find(name + "_seconds") {
            for case .histograms(let list) in frames { timerSum = list.last { $0.id == id }?.sum ?? timerSum }
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    if client >= 0 { close(client) }
    #expect(counterValue == 5)
    #expect(sizeSum == 3)
    #expect(timerSum == 0.0015)
    let declaration = frames.lazy.compactMap { frame -> SeriesDeclaration? in
        guard case .declare(let list) = frame else { return nil }
        return list.first { $0.name == name }
    }.first
    #expect(declaration?.type == .counter)
    #expect(declaration?.labels == [Label("kind", "retail")])
}
