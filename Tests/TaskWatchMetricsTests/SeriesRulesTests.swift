import CoreMetrics
import Foundation
import TaskWatchWire
import Testing

@testable import TaskWatch
@testable import TaskWatchMetrics

/// A factory declaring into a table of its own, so the tests see exactly what it declared.
func isolatedFactory(
    limit: Int = 100, recorderBounds: [Double] = HistogramBounds.prometheusDefault,
    timerBounds: [Double] = HistogramBounds.taskDuration
) -> (TaskWatchMetricsFactory, SeriesTable) {
    let table = SeriesTable(limit: limit)
    let factory = TaskWatchMetricsFactory(
        recorderBounds: recorderBounds, timerBounds: timerBounds, declare: { table.declare(all: $0) },
        retire: table.retire, retired: { table.retirements }, countConflict: { table.countDropped(1) })
    return (factory, table)
}

func declaration(_ handler: AnyObject, in table: SeriesTable) -> SeriesDeclaration? {
    guard let id = seriesID(handler) else { return nil }
    return table.liveDeclarations.first { $0.id == id.rawValue }
}

@Suite struct SeriesRulesTests {
    /// The daemon refuses a values frame with a negative or infinite counter whole, which carries every
    /// series of the process: a wrapped counter froze them all.
    @Test func countersSaturateInsteadOfWrappingOrReachingInfinity() throws {
        let (factory, _) = isolatedFactory()
        let counter = factory.makeCounter(label: "huge", dimensions: [])
        counter.increment(by: .max)
        counter.increment(by: .max)
        counter.increment(by: 1)
        #expect(collect(factory).value(of: try #require(seriesID(counter))) == Double(Int64.max))
        // Small amounts (one atomic add) stop there too.
        let near = factory.makeCounter(label: "near", dimensions: [])
        near.increment(by: .max - 10)
        for _ in 0..<3 { near.increment(by: Int64(UInt32.max)) }
        #expect(collect(factory).value(of: try #require(seriesID(near))) == Double(Int64.max))

        let float = factory.makeFloatingPointCounter(label: "huge_float", dimensions: [])
        float.increment(by: .greatestFiniteMagnitude)
        float.increment(by: .greatestFiniteMagnitude)
        float.increment(by: .infinity)
        float.increment(by: -.infinity)
        float.increment(by: .nan)
        #expect(collect(factory).value(of: try #require(seriesID(float))) == .greatestFiniteMagnitude)

        // Both parts of one counter at their top still make a finite total.
        let both = factory.makeCounter(label: "huge_both", dimensions: [])
        both.increment(by: .max)
        factory.makeFloatingPointCounter(label: "huge_both", dimensions: []).increment(by: .greatestFiniteMagnitude)
        #expect(collect(factory).value(of: try #require(seriesID(both))) == .greatestFiniteMagnitude)
    }

    /// A review's repro: `Meter("swift_tasks")`, made before any task monitor, took the name from the
    /// task series of every process on the host (the daemon keeps a name's first type and labels). The
    /// library's own names, and those they write besides, are refused and counted, in any shape.
    @Test func theLibrarysOwnSeriesNamesAreRefusedAndCounted() {
        let (factory, table) = isolatedFactory()
        let taken: [(String, AnyObject)] = [
            ("swift_tasks", factory.makeMeter(label: "swift_tasks", dimensions: [])),
            ("swift_tasks task", factory.makeMeter(label: "swift_tasks", dimensions: [("task", "x")])),
            ("swift_tasks_created", factory.makeMeter(label: "swift_tasks_created", dimensions: [("task", "x")])),
            ("counter swift_tasks", factory.makeCounter(label: "swift_tasks", dimensions: [])),
            (
                "lag count",
                factory.makeRecorder(label: "swift_executor_lag_seconds_count", dimensions: [], aggregate: false)
            ),
            ("series dropped", factory.makeCounter(label: "swift_taskwatch_series_dropped", dimensions: [])),
        ]
        for (what, handler) in taken { #expect(seriesID(handler) == nil, "\(what)") }
        #expect(factory.seriesDropped == UInt64(taken.count))
        #expect(table.liveCount == 0)
        #expect(table.dropped == UInt64(taken.count), "counted as conflicts in the process's table too")
        // Names beside them are the app's.
        #expect(seriesID(factory.makeMeter(label: "swift_tasks_queued", dimensions: [])) != nil)
        #expect(seriesID(factory.makeCounter(label: "swift_executor_custom", dimensions: [])) != nil)
    }

    /// Names the daemon writes itself were declared, refused there as `reserved_name` and counted only
    /// in the daemon's `taskwatch_series_dropped_total`, while the app's handler reported into nothing
    /// and nothing in the process said so. Refused and counted in the process, as the library's names are.
    @Test func theDaemonsOwnSeriesNamesAreRefusedAndCounted() {
        let (factory, table) = isolatedFactory()
        let taken: [(String, AnyObject)] = [
            ("taskwatch_ prefix", factory.makeMeter(label: "taskwatch_clients", dimensions: [])),
            ("process_ prefix", factory.makeCounter(label: "process_cpu_seconds", dimensions: [])),
            ("from /proc", factory.makeMeter(label: "swift_process_threads", dimensions: [])),
            // A counter's OpenMetrics family name is the daemon's gauge.
            ("family name", factory.makeCounter(label: "swift_process_open_fds", dimensions: [])),
            ("created", factory.makeMeter(label: "swift_process_cpu_seconds_created", dimensions: [])),
            ("dotted", factory.makeTimer(label: "taskwatch.request", dimensions: [("k", "v")])),
        ]
        for (what, handler) in taken { #expect(seriesID(handler) == nil, "\(what)") }
        #expect(factory.seriesDropped == UInt64(taken.count))
        #expect(table.liveCount == 0)
        #expect(table.dropped == UInt64(taken.count))
        // Names that only look alike are the app's.
        #expect(seriesID(factory.makeMeter(label: "app_taskwatch_clients", dimensions: [])) != nil)
        #expect(seriesID(factory.makeMeter(label: "swift_process_queue_depth", dimensions: [])) != nil)
    }

    /// A dimension named like one of the reporter's constant labels (`Configuration.labels`, on every
    /// series of the connection) was refused by the daemon as `reserved_label`, and nothing in the
    /// process counted it. It takes the `exported_` prefix, as `process` and `pid` do.
    @Test func aDimensionNamedLikeAConstantLabelIsExported() throws {
        let table = SeriesTable(limit: 100)
        let factory = TaskWatchMetricsFactory(
            declare: { table.declare(all: $0) }, retire: table.retire, constantLabelNames: { ["env"] })
        let counter = factory.makeCounter(label: "hits", dimensions: [("env", "staging"), ("zone", "a")])
        let declared = try #require(declaration(counter, in: table))
        #expect(declared.labels == [Label("exported_env", "staging"), Label("zone", "a")])
    }

    @Test func dimensionsInAnotherOrderAreTheSameSeries() throws {
        let (factory, table) = isolatedFactory()
        let first = factory.makeCounter(label: "orders", dimensions: [("b", "2"), ("a", "1"), ("b", "3")])
        let second = factory.makeCounter(label: "orders", dimensions: [("a", "1"), ("b", "2")])
        #expect(first === second)
        #expect(table.liveCount == 1)
        #expect(declaration(first, in: table)?.labels == [Label("a", "1"), Label("b", "2")])
        first.increment(by: 2)
        second.increment(by: 3)
        #expect(collect(factory).value(of: try #require(seriesID(first))) == 5)
    }

    /// One Prometheus series, one declaration: the daemon drops a second one of the same name and labels.
    @Test func handlersOfOneSeriesShareOneBox() throws {
        let (factory, table) = isolatedFactory()
        let counter = factory.makeCounter(label: "bytes", dimensions: [("k", "v")])
        let float = factory.makeFloatingPointCounter(label: "bytes_total", dimensions: [("k", "v")])
        #expect(counter === float)
        counter.increment(by: 3)
        float.increment(by: 1.5)
        #expect(collect(factory).value(of: try #require(seriesID(counter))) == 4.5)

        let meter = factory.makeMeter(label: "depth", dimensions: [])
        let recorder = factory.makeRecorder(label: "depth", dimensions: [], aggregate: false)
        #expect(meter === recorder)
        meter.set(Int64(4))
        recorder.record(7.0)
        #expect(collect(factory).value(of: try #require(seriesID(meter))) == 7)

        let timer = factory.makeTimer(label: "latency", dimensions: [])
        let histogram = factory.makeRecorder(label: "latency", dimensions: [], aggregate: true)
        #expect(timer === histogram)
        #expect(declaration(timer, in: table)?.bounds == HistogramBounds.taskDuration)
        #expect(table.liveCount == 3)
        #expect(factory.seriesDropped == 0)
    }

    /// The daemon keeps one type and one set of label names per name, and no name another family writes
    /// (`x_total`'s `x`, a histogram's `_count`): the factory refuses what it would, first come first
    /// served, and gives the name free once its series are gone.
    @Test func aNameKeepsOneTypeAndOneLabelSetWhileItLives() throws {
        let (factory, table) = isolatedFactory()
        let counter = factory.makeCounter(label: "jobs", dimensions: [])
        #expect(seriesID(counter) != nil)
        #expect(seriesID(factory.makeMeter(label: "jobs", dimensions: [])) == nil)
        #expect(seriesID(factory.makeTimer(label: "jobs", dimensions: [])) == nil)
        #expect(seriesID(factory.makeMeter(label: "jobs_total", dimensions: [])) == nil)
        #expect(seriesID(factory.makeCounter(label: "jobs", dimensions: [("queue", "a")])) == nil)
        let timer = factory.makeTimer(label: "wait", dimensions: [])
        #expect(seriesID(timer) != nil)
        #expect(seriesID(factory.makeMeter(label: "wait_count", dimensions: [])) == nil)
        #expect(seriesID(factory.makeCounter(label: "wait_sum", dimensions: [])) == nil)
        #expect(factory.seriesDropped == 6)
        #expect(table.dropped == 6, "conflicts count in the process's table too, which reports them")
        #expect(table.liveCount == 2)
        // Labelled series of one name keep one set of label names, with any values.
        #expect(seriesID(factory.makeMeter(label: "rooms", dimensions: [("floor", "1")])) != nil)
        #expect(seriesID(factory.makeMeter(label: "rooms", dimensions: [("floor", "2")])) != nil)

        factory.destroyCounter(counter)
        let meter = factory.makeMeter(label: "jobs", dimensions: [])
        #expect(seriesID(meter) != nil, "the name is free once the counter is gone")
        #expect(factory.seriesDropped == 6)
    }

    /// Code that makes its metrics per request makes a refused series again and again: it counts once,
    /// and is tried again only once a retirement may have made room.
    @Test func aRefusedSeriesCountsOnceAndIsTriedAgainOnlyOnceRoomIsFreed() throws {
        let (factory, table) = isolatedFactory(limit: 3)
        let held = (0..<3).map { factory.makeCounter(label: "held", dimensions: [("n", "\($0)")]) }
        #expect(held.allSatisfy { seriesID($0) != nil })
        for _ in 0..<1_000 {
            factory.makeCounter(label: "over", dimensions: [("route", "/")]).increment(by: 1)
        }
        #expect(factory.seriesDropped == 1)
        #expect(table.dropped == 1, "declared once, not on every call")
        // Another refused series counts on its own.
        #expect(seriesID(factory.makeMeter(label: "other", dimensions: [])) == nil)
        #expect(factory.seriesDropped == 2)
        // Room freed: the next make declares it.
        factory.destroyCounter(held[0])
        let over = factory.makeCounter(label: "over", dimensions: [("route", "/")])
        #expect(seriesID(over) != nil)
        #expect(seriesID(factory.makeMeter(label: "other", dimensions: [])) == nil)
        #expect(factory.seriesDropped == 2, "refused again after a retry: not counted again")
        // A name over the protocol's limit is refused for good, once.
        let long = String(repeating: "n", count: Wire.maxNameLength + 1)
        factory.destroyCounter(over)
        for _ in 0..<10 { #expect(seriesID(factory.makeCounter(label: long, dimensions: [])) == nil) }
        #expect(factory.seriesDropped == 3)
    }

    @Test func refusedSeriesRememberedStayBounded() {
        let (factory, _) = isolatedFactory(limit: 0)
        for index in 0..<(TaskWatchMetricsFactory.maxRefused + 10) {
            _ = factory.makeCounter(label: "request", dimensions: [("id", "\(index)")])
        }
        let made = UInt64(TaskWatchMetricsFactory.maxRefused + 10)
        #expect(factory.seriesDropped == made)
        // The latest are remembered; the oldest were forgotten, and count again.
        _ = factory.makeCounter(label: "request", dimensions: [("id", "\(TaskWatchMetricsFactory.maxRefused + 9)")])
        #expect(factory.seriesDropped == made)
        _ = factory.makeCounter(label: "request", dimensions: [("id", "0")])
        #expect(factory.seriesDropped == made + 1)
    }

    /// Valid dimensions never make a series vanish: `le` and `quantile` are renamed as `process` and
    /// `pid` are, and a label value past the protocol's limit is cut at a character boundary.
    @Test func leAndQuantileAreRenamedAndLongValuesAreCut() throws {
        let (factory, table) = isolatedFactory()
        let timer = factory.makeTimer(label: "slow", dimensions: [("le", "0.5"), ("quantile", "0.9")])
        #expect(
            declaration(timer, in: table)?.labels == [Label("exported_le", "0.5"), Label("exported_quantile", "0.9")])
        let recorder = factory.makeRecorder(label: "sizes", dimensions: [("le", "1")], aggregate: true)
        #expect(declaration(recorder, in: table)?.labels == [Label("exported_le", "1")])
        // On every type: promtool refuses `le` outside histograms and `quantile` outside summaries (and the
        // daemon's own histograms' `le` must not meet one).
        let meter = factory.makeMeter(label: "level", dimensions: [("le", "1")])
        #expect(declaration(meter, in: table)?.labels == [Label("exported_le", "1")])
        let gauge = factory.makeRecorder(label: "depth", dimensions: [("quantile", "0.5")], aggregate: false)
        #expect(declaration(gauge, in: table)?.labels == [Label("exported_quantile", "0.5")])
        let total = factory.makeCounter(label: "hits", dimensions: [("quantile", "0.5"), ("le", "2"), ("a", "b")])
        #expect(
            declaration(total, in: table)?.labels == [
                Label("a", "b"), Label("exported_le", "2"), Label("exported_quantile", "0.5"),
            ])

        let value = String(repeating: "a", count: Wire.maxTextLength - 1) + "€" + "tail"
        let counter = factory.makeCounter(label: "paths", dimensions: [("path", value)])
        let labels = try #require(declaration(counter, in: table)?.labels)
        #expect(labels == [Label("path", String(repeating: "a", count: Wire.maxTextLength - 1))])
        // Values equal up to the limit are one series.
        #expect(factory.makeCounter(label: "paths", dimensions: [("path", value + "more")]) === counter)
        #expect(factory.seriesDropped == 0)
    }

    /// A NaN added to a meter made it NaN for good, which the reporter leaves out: it stopped reporting.
    @Test func aMeterIgnoresNonFiniteValuesAndAmounts() throws {
        let (factory, _) = isolatedFactory()
        let meter = factory.makeMeter(label: "queue", dimensions: [])
        let id = try #require(seriesID(meter))
        meter.set(Int64(1))
        meter.increment(by: .nan)
        meter.decrement(by: .nan)
        meter.increment(by: .infinity)
        meter.decrement(by: .infinity)
        meter.set(Double.nan)
        meter.set(Double.infinity)
        #expect(collect(factory).value(of: id) == 1)
        meter.increment(by: 2)
        #expect(collect(factory).value(of: id) == 3)
        // A sum past the largest Double stops there, so a decrement still moves it.
        meter.increment(by: .greatestFiniteMagnitude)
        meter.increment(by: .greatestFiniteMagnitude)
        meter.decrement(by: .greatestFiniteMagnitude)
        #expect(collect(factory).value(of: id) == 0)
    }

    /// Bounds the daemon would refuse made every histogram of the factory vanish.
    @Test func unusableBoundsAreCleanedOrReplaced() throws {
        let (factory, table) = isolatedFactory(
            recorderBounds: [3, .nan, 1, 2, 1, .infinity, -.infinity], timerBounds: [.nan, .infinity])
        #expect(factory.recorderBounds == [1, 2, 3])
        #expect(factory.timerBounds == HistogramBounds.taskDuration)
        let recorder = factory.makeRecorder(label: "sizes", dimensions: [], aggregate: true)
        #expect(declaration(recorder, in: table)?.bounds == [1, 2, 3])
        recorder.record(2.5)
        #expect(collect(factory).histogram(of: try #require(seriesID(recorder)))?.buckets == [0, 0, 1, 0])
        #expect(seriesID(factory.makeTimer(label: "wait", dimensions: [])) != nil)
        #expect(TaskWatchMetricsFactory(recorderBounds: []).recorderBounds == HistogramBounds.prometheusDefault)
        let many = TaskWatchMetricsFactory(recorderBounds: (0..<300).map(Double.init).reversed())
        #expect(many.recorderBounds == (0..<Wire.maxBounds).map(Double.init))
    }
}
