import CTaskWatchRuntime
import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

/// A declaration refused at a limit that can free up (the daemon's series cap, the byte budget, the
/// uid's cap, the connection's own cap) waits, and is admitted at the client's next frame once room
/// frees. The client library declares each series once per
/// connection and cannot see a refusal: before, a few seconds of another client at a cap removed its
/// series until it reconnected.
@Suite struct RegistryPendingTests {
    /// Gauges `hog_g{i="0"}`, … of the client that takes the room.
    static func hogGauges(_ count: Int) -> [SeriesDeclaration] {
        (0..<count).map {
            SeriesDeclaration(id: UInt32(10 + $0), type: .gauge, name: "hog_g", help: "", labels: [Label("i", "\($0)")])
        }
    }

    /// Gauges `vic_g{i="0"}`, … with ids from 100.
    static func victimGauges(_ count: Int) -> [SeriesDeclaration] {
        (0..<count).map {
            SeriesDeclaration(
                id: UInt32(100 + $0), type: .gauge, name: "vic_g", help: "", labels: [Label("i", "\($0)")])
        }
    }

    static let victimTasks = "swift_tasks{process=\"vic\",pid=\"2\",task=\"default\"}"

    func droppedValues(_ h: Harness, _ reason: SeriesRejection) -> String? {
        h.value("taskwatch_values_dropped_total{reason=\"\(reason.rawValue)\"}")
    }

    /// The reviewer's run, with `--ingest.max-series 4`: a hog takes every series; the victim's
    /// declaration is refused as `global_limit`; the hog says goodbye. The victim's next values frame
    /// admits the declaration and is shown; declaring the id again, retiring it and declaring it once
    /// more then work as for any series, and nothing is counted as `duplicate_series`.
    @Test func aDeclarationRefusedAtTheDaemonsCapIsAdmittedOnceTheHogLeaves() {
        var limits = RegistryLimits()
        limits.maxSeries = 4
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(4))
        h.connect(2, process: "vic", declaring: [tasksGauge])
        #expect(h.dropped(.globalLimit) == "1")
        h.send(2, .values([ValueUpdate(id: 1, value: 3)]))
        // Declared again, the same, while it waits: nothing changes, nothing is counted.
        h.send(2, .declare([tasksGauge]))
        #expect(h.value(Self.victimTasks) == nil)
        #expect(h.dropped(.duplicateSeries) == "0")

        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        h.send(2, .values([ValueUpdate(id: 1, value: 5)]))
        #expect(h.value(Self.victimTasks) == "5")
        #expect(h.value("taskwatch_series") == "1")

        h.send(2, .declare([tasksGauge]))
        h.send(2, .retire([1]))
        #expect(h.value(Self.victimTasks) == nil)
        h.send(2, .declare([tasksGauge]))
        h.send(2, .values([ValueUpdate(id: 1, value: 6)]))
        #expect(h.value(Self.victimTasks) == "6")
        #expect(h.dropped(.duplicateSeries) == "0")
        #expect(h.dropped(.globalLimit) == "1", "counted once, when first refused")
        #expect(h.rejected(.unknownSeries) == "0")
        #expect(h.registry.pendingBytes == 0)
    }

    /// Each limit whose room can free up keeps the declaration, counts it once under its reason and
    /// counts the values reported for it meanwhile under the same reason; freed room (another
    /// connection going or retiring, or the connection's own retire for its own cap) admits it at the
    /// client's next frame.
    @Test(arguments: [SeriesRejection.globalLimit, .uidLimit, .byteLimit, .clientLimit])
    func aDeclarationWaitsAtEveryLimitThatCanFreeUp(_ reason: SeriesRejection) {
        var limits = RegistryLimits()
        // Every connection's labels are `process="…",pid="…"` with a 3-letter name and a 1-digit pid.
        let connectionLines = Registry.connectionLineBytes(connectionLabels: 21)
        let help = "Reported by a TaskWatch client without help text.".utf8.count
        switch reason {
        case .globalLimit: limits.maxSeries = 1
        case .uidLimit: limits.maxSeriesPerUID = 1
        // The hog's gauge (`hog_g{i="0"}`, 5 + 5 + 21 + 32) and its family's help, and 10 bytes: not the
        // victim's `swift_tasks` (11 + 14 + 21 + 32) with its help.
        case .byteLimit: limits.maxLabelBytes = 2 * connectionLines + (5 + 5 + 21 + 32) + help + 10
        default: limits.maxSeriesPerClient = 1
        }
        let h = Harness(limits: limits)
        if reason == .clientLimit {
            // The connection holds its one series itself.
            h.connect(2, process: "vic", declaring: Self.victimGauges(1) + [tasksGauge])
        } else {
            h.connect(1, process: "hog", declaring: Self.hogGauges(1))
            h.connect(2, process: "vic", declaring: [tasksGauge])
        }
        #expect(h.dropped(reason) == "1")
        for value in 1...3 { h.send(2, .values([ValueUpdate(id: 1, value: Double(value))])) }
        #expect(h.value(Self.victimTasks) == nil)
        #expect(droppedValues(h, reason) == "3")

        switch reason {
        case .clientLimit: h.send(2, .retire([100]))
        case .uidLimit: h.send(1, .retire([10]))
        default:
            h.send(1, .goodbye)
            h.registry.connectionClosed(ConnectionID(1))
        }
        h.send(2, .values([ValueUpdate(id: 1, value: 7)]))
        #expect(h.value(Self.victimTasks) == "7")
        #expect(droppedValues(h, reason) == "3")
        #expect(h.dropped(reason) == "1")
        #expect(h.registry.pendingBytes == 0)
    }

    /// A retire of an id whose declaration waits forgets it: it is not admitted when room frees, its
    /// values are no longer counted, and declared anew the id is admitted as any.
    @Test func aWaitingDeclarationMayBeRetired() {
        var limits = RegistryLimits()
        limits.maxSeries = 2
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(2))
        h.connect(2, process: "vic", declaring: Self.victimGauges(1))
        #expect(h.dropped(.globalLimit) == "1")
        #expect(h.registry.pendingBytes > 0)
        h.send(2, .retire([100]))
        #expect(h.registry.pendingBytes == 0)
        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        h.send(2, .values([ValueUpdate(id: 100, value: 4)]))
        #expect(h.value("taskwatch_series") == "0")
        #expect(droppedValues(h, .globalLimit) == "0")
        #expect(h.rejected(.unknownSeries) == "0")
        h.send(2, .declare(Self.victimGauges(1)))
        h.send(2, .values([ValueUpdate(id: 100, value: 5)]))
        #expect(h.value("vic_g{process=\"vic\",pid=\"2\",i=\"0\"}") == "5")
    }

    /// Entries of values, histograms and peaks frames for waiting series are dropped and counted, one
    /// each, under the limit they wait on; the frames are not refused, so however many come, the
    /// connection is never closed for them.
    @Test func valuesOfWaitingSeriesAreDroppedAndCounted() {
        var limits = RegistryLimits()
        // Room, once the hog is gone, for the three and the gauge's added `_peak`.
        limits.maxSeries = 4
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(4))
        let histogram = SeriesDeclaration(id: 3, type: .histogram, name: "vic_h", help: "", bounds: [1])
        h.connect(2, process: "vic", declaring: [tasksGauge, createdCounter, histogram])
        #expect(h.dropped(.globalLimit) == "3")
        let frames: [Frame] = [
            .values([ValueUpdate(id: 1, value: 1), ValueUpdate(id: 2, value: 1)]),
            .histograms([HistogramUpdate(id: 3, buckets: [1, 0], sum: 0.5)]),
            .peaks([PeakSample(id: 1, value: 2)]),
        ]
        for _ in 0..<(2 * limits.maxConsecutiveRejections) {
            for frame in frames {
                for bytes in FrameEncoder.encode(frame) { #expect(h.send(2, bytes) == .keep) }
            }
        }
        let entries = 4 * 2 * limits.maxConsecutiveRejections
        #expect(droppedValues(h, .globalLimit) == "\(entries)")
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"bad_frames\"}") == "0")
        #expect(h.value("taskwatch_messages_rejected_total{reason=\"unknown_series\"}") == "0")
        // Admitted, they are shown and no longer counted.
        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        for frame in frames { h.send(2, frame) }
        #expect(h.value("swift_tasks_created_total{process=\"vic\",pid=\"2\",task=\"default\"}") == "1")
        #expect(h.value("vic_h_count{process=\"vic\",pid=\"2\"}") == "1")
        #expect(h.value("swift_tasks_peak{process=\"vic\",pid=\"2\",task=\"default\"}") == "2")
        #expect(droppedValues(h, .globalLimit) == "\(entries)")
    }

    /// A connection keeps at most `maxSeriesPerClient` waiting declarations and
    /// `maxLabelBytesPerClient` bytes of them (`PendingDeclaration.cost`), all connections together at
    /// most `maxLabelBytes`; past that a declaration is dropped for good, as before, and its values
    /// are not counted. A connection that closes gives back what its waiting declarations held.
    @Test func waitingDeclarationsAreBounded() {
        // By count: three of five wait.
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 3
        limits.maxSeries = 3
        var h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(3))
        h.connect(2, process: "vic", declaring: Self.victimGauges(5))
        #expect(h.dropped(.globalLimit) == "5")
        h.send(2, .values((100..<105).map { ValueUpdate(id: UInt32($0), value: 1) }))
        #expect(droppedValues(h, .globalLimit) == "3")
        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        h.send(2, .values((100..<105).map { ValueUpdate(id: UInt32($0), value: 2) }))
        #expect(h.value("taskwatch_series") == "3")
        #expect(h.value("vic_g{process=\"vic\",pid=\"2\",i=\"2\"}") == "2")
        #expect(h.value("vic_g{process=\"vic\",pid=\"2\",i=\"3\"}") == nil)

        // By the connection's bytes: a wide declaration whose series would fit the connection's budget
        // but whose waiting copy would not is dropped for good; a small one waits.
        let wide = SeriesDeclaration(
            id: 200, type: .gauge, name: "vic_w", help: "", labels: [Label("v", String(repeating: "x", count: 2_000))])
        limits = RegistryLimits()
        limits.maxSeries = 1
        limits.maxLabelBytesPerClient = PendingDeclaration.cost(of: wide) - 1
        #expect(
            Registry.chargedBytes(name: "vic_w", labelText: 2_004, connectionLabels: 21, bounds: nil)
                < limits.maxLabelBytesPerClient)
        h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(1))
        h.connect(2, process: "vic", declaring: [wide] + Self.victimGauges(1))
        h.send(2, .values([ValueUpdate(id: 200, value: 1), ValueUpdate(id: 100, value: 1)]))
        #expect(droppedValues(h, .globalLimit) == "1")
        #expect(h.registry.pendingBytes == PendingDeclaration.cost(of: Self.victimGauges(1)[0]))

        // By all connections' bytes: of two victims' declarations, as many wait as `maxLabelBytes` holds,
        // here just what the three connections' own lines and the hog's gauge with its help take.
        let cost = PendingDeclaration.cost(of: Self.victimGauges(1)[0])
        let help = "Reported by a TaskWatch client without help text.".utf8.count
        limits = RegistryLimits()
        limits.maxSeries = 1
        limits.maxLabelBytes = 3 * Registry.connectionLineBytes(connectionLabels: 21) + (5 + 5 + 21 + 32) + help
        let fit = limits.maxLabelBytes / cost
        #expect(fit > 5 && fit < 10, "some of the second victim's wait, not all")
        h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(1))
        h.connect(2, process: "vic", declaring: Self.victimGauges(5))
        h.connect(3, process: "oth", declaring: Self.victimGauges(5))
        #expect(h.dropped(.globalLimit) == "10")
        #expect(h.registry.pendingBytes == fit * cost)
        for connection in UInt64(2)...3 {
            h.send(connection, .values((100..<105).map { ValueUpdate(id: UInt32($0), value: 1) }))
        }
        #expect(droppedValues(h, .globalLimit) == "\(fit)")
        // Closed, a connection's waiting declarations go with it.
        h.registry.connectionClosed(ConnectionID(2))
        #expect(h.registry.pendingBytes == (fit - 5) * cost)
        h.registry.connectionClosed(ConnectionID(3))
        #expect(h.registry.pendingBytes == 0)
    }

    /// A try admits at most `Registry.pendingRetryBatch` declarations a frame, so a long backlog does
    /// not hold the lock for long; the rest go on at the next frame of any connection, still oldest
    /// first: another connection's declaration, refused after the whole backlog, comes after it.
    @Test func aLongBacklogIsAdmittedInBatchesInTheOrderRefused() {
        let batch = Registry.pendingRetryBatch
        var limits = RegistryLimits()
        limits.maxSeries = batch + 100
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(batch + 100))
        h.connect(2, process: "vic", declaring: Self.victimGauges(batch + 100))
        h.connect(3, process: "oth", declaring: [tasksGauge])
        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        h.send(2, .values([ValueUpdate(id: 100, value: 1)]))
        #expect(h.value("taskwatch_series") == "\(batch)")
        h.send(3, .values([ValueUpdate(id: 1, value: 1)]))
        #expect(h.value("taskwatch_series") == "\(batch + 100)")
        #expect(h.value("swift_tasks{process=\"oth\",pid=\"3\",task=\"default\"}") == nil, "behind the backlog")
        #expect(droppedValues(h, .globalLimit) == "1")
        // The next series to go is its.
        h.send(2, .retire([100]))
        h.send(3, .values([ValueUpdate(id: 1, value: 3)]))
        #expect(h.value("swift_tasks{process=\"oth\",pid=\"3\",task=\"default\"}") == "3")
        #expect(h.registry.pendingBytes == 0)
    }

    /// A review kept two declarations waiting at the connection's cap and retired and re-declared one
    /// of them in a loop: each cycle left 16 bytes in the queue of waiting ids for good (the daemon went
    /// from 25 to 146 MB in 50 s). The queue stays within twice the waiting ones plus a constant.
    @Test func retiringAndRedeclaringAtTheCapLeavesNoTrail() {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 3
        let h = Harness(limits: limits)
        let gauges = (0..<3).map {
            SeriesDeclaration(id: UInt32($0), type: .gauge, name: "churn_g", help: "", labels: [Label("i", "\($0)")])
        }
        h.connect(1, process: "churn", declaring: Self.hogGauges(2) + gauges)
        #expect(h.dropped(.clientLimit) == "2")
        for cycle in 0..<20_000 {
            let gauge = gauges[cycle % 3]
            h.send(1, .retire([gauge.id]))
            h.send(1, .declare([gauge]))
        }
        #expect(h.registry.pendingQueueEntries <= 2 * 2 + 64 + 1, "\(h.registry.pendingQueueEntries) entries")
        #expect(h.value("taskwatch_series") == "3")
    }

    /// What waiting declarations are counted as covers what they take on the heap (a review measured
    /// twice the earlier estimate in resident memory): wide declarations of long strings, held waiting,
    /// against glibc's count of bytes in use.
    @Test func theCostOfAWaitingDeclarationCoversItsHeap() {
        var limits = RegistryLimits()
        limits.maxSeries = 1
        for labels in [0, 1, 8, 32] {
            let h = Harness(limits: limits)
            h.connect(1, process: "hog", declaring: Self.hogGauges(1))
            h.open(2, pid: 2)
            h.hello(2, process: "vic")
            let declarations = (0..<2_000).map { id in
                SeriesDeclaration(
                    id: UInt32(1_000 + id), type: .gauge, name: "wide_gauge_name_\(id % 10)", help: "sixteen byte help",
                    labels: (0..<labels).map { Label("label_name_\($0)_xxxxx", "label_value_\($0)_\(id)_yyyyy") })
            }
            // Encoded before the count starts: what grows is what the registry decoded and keeps.
            let frames = stride(from: 0, to: 2_000, by: 50).map { Frame.declare(Array(declarations[$0..<($0 + 50)])) }
            let encoded = frames.flatMap { FrameEncoder.encode($0) }
            let before = tw_heap_stats_read().in_use_bytes
            for bytes in encoded { h.send(2, bytes) }
            let grown = Int(tw_heap_stats_read().in_use_bytes) - Int(before)
            #expect(h.dropped(.globalLimit) == "2000")
            #expect(grown > 0)
            #expect(
                h.registry.pendingBytes >= grown,
                "\(labels) labels: counted \(h.registry.pendingBytes) bytes for \(grown) allocated")
        }
    }

    /// A review declared a histogram whose lines alone took more than the connection's byte budget,
    /// then a gauge, both refused at the daemon's cap: once the hog left, the histogram was refused at
    /// `byte_limit` at every retry, which stopped there, and the gauge waited for the connection's life
    /// with the room free. One that could never fit does not wait; the gauge behind it is admitted.
    @Test func aDeclarationThatCouldNeverFitDoesNotHoldUpTheOthers() {
        var limits = RegistryLimits()
        limits.maxSeries = 1
        limits.maxLabelBytesPerClient = 4_096
        let h = Harness(limits: limits)
        // 67 lines of more than 200 bytes each.
        let histogram = SeriesDeclaration(
            id: 1, type: .histogram, name: "vic_h", help: "", labels: [Label("v", String(repeating: "x", count: 200))],
            bounds: (1...64).map(Double.init))
        h.connect(1, process: "hog", declaring: Self.hogGauges(1))
        h.connect(2, process: "vic", declaring: [histogram] + Self.victimGauges(1))
        #expect(h.dropped(.globalLimit) == "2")
        #expect(h.registry.pendingBytes == PendingDeclaration.cost(of: Self.victimGauges(1)[0]))
        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        h.send(2, .values([ValueUpdate(id: 100, value: 7)]))
        #expect(h.value("vic_g{process=\"vic\",pid=\"2\",i=\"0\"}") == "7")
        #expect(h.registry.pendingBytes == 0)
        // Dropped for good: its entries are skipped, not counted, and do not refuse the frame.
        h.send(2, .histograms([HistogramUpdate(id: 1, buckets: Array(repeating: 0, count: 65), sum: 0)]))
        #expect(droppedValues(h, .byteLimit) == "0")
        #expect(h.rejected(.unknownSeries) == "0")
    }

    /// A connection set aside at its own byte budget waits for one of its series to go; its oldest
    /// waiting declaration retired is as good: a smaller one behind it may fit now. It stayed set
    /// aside, and the small gauge waited, with room free, until some series of the connection went.
    @Test func retiringTheWaitingDeclarationThatSetItsConnectionAsideLetsTheNextIn() {
        func gauge(_ id: UInt32, width: Int) -> SeriesDeclaration {
            let label = Label("i", String(repeating: "x", count: width))
            return SeriesDeclaration(id: id, type: .gauge, name: "vic_g", help: "", labels: [label])
        }
        let held = gauge(100, width: 700)
        let wide = gauge(101, width: 1_000)
        let small = SeriesDeclaration(id: 102, type: .gauge, name: "vic_s", help: "", labels: [])
        var limits = RegistryLimits()
        limits.maxLabelBytesPerClient = 1_750
        let waitingCost = PendingDeclaration.cost(of: wide) + PendingDeclaration.cost(of: small)
        #expect(waitingCost <= limits.maxLabelBytesPerClient)
        let h = Harness(limits: limits)
        h.connect(2, process: "vic", declaring: [held, wide, small])
        #expect(h.dropped(.byteLimit) == "2", "the wide one at the connection's budget, the small one behind it")
        h.send(2, .retire([101]))
        h.send(2, .values([ValueUpdate(id: 102, value: 4)]))
        #expect(h.value("vic_s{process=\"vic\",pid=\"2\"}") == "4")
        #expect(droppedValues(h, .byteLimit) == "0")
        #expect(h.registry.pendingBytes == 0)
    }

    /// A review had the hog go without a goodbye: its series, held for the grace period, give way to
    /// any live client's declaration, but the waiting one was not tried until the grace period ended
    /// (30.1 s against the real daemon), while a client that declared after the hog went was admitted
    /// at once in its place. Now the waiting one is tried at its client's next frame, and the newcomer
    /// waits behind it.
    @Test func aClientGoneIntoItsGracePeriodMakesRoomForWaitingDeclarations() {
        var limits = RegistryLimits()
        limits.maxSeries = 1
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: Self.hogGauges(1))
        h.send(1, .values([ValueUpdate(id: 10, value: 1)]))
        h.connect(2, process: "vic", declaring: [tasksGauge])
        #expect(h.dropped(.globalLimit) == "1")
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.value("hog_g{process=\"hog\",pid=\"1\",i=\"0\"}") == "1", "held for its grace period")
        h.send(2, .values([ValueUpdate(id: 1, value: 5)]))
        #expect(h.value(Self.victimTasks) == "5")
        #expect(h.value("hog_g{process=\"hog\",pid=\"1\",i=\"0\"}") == nil)
        h.connect(3, process: "new", declaring: Self.victimGauges(1))
        #expect(h.value("vic_g{process=\"new\",pid=\"3\",i=\"0\"}") == nil)
        #expect(h.dropped(.globalLimit) == "2")
        #expect(h.value("taskwatch_series") == "1")
    }

}
