import CTaskWatchRuntime
import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

/// Declarations refused as a `conflict` are kept and tried again once the family holding their name
/// goes: these check what a sender can make of that machinery, and that its counts and indexes hold.
@Suite struct RegistryConflictTests {
    func droppedValues(_ h: Harness) -> String? {
        h.value("taskwatch_values_dropped_total{reason=\"conflict\"}")
    }

    /// An id retired and declared again is kept after a conflict as a new id is: a retire gives the id
    /// back to be declared anew, so a release that renames under ids it reuses must not lose the metric
    /// for the connection's life.
    @Test func anIdRetiredAndDeclaredAgainInConflictIsKept() {
        let h = Harness()
        let old = SeriesDeclaration(id: 1, type: .counter, name: "app_jobs", help: "")
        let mine = SeriesDeclaration(id: 5, type: .gauge, name: "app_other", help: "")
        let new = SeriesDeclaration(id: 5, type: .gauge, name: "app_jobs", help: "")
        h.connect(1, process: "old", declaring: [old])
        h.connect(2, process: "new", declaring: [mine])
        h.send(2, .retire([5]))
        h.send(2, .declare([new]))
        #expect(h.dropped(.conflict) == "1")
        h.send(2, .values([ValueUpdate(id: 5, value: 1)]))
        #expect(droppedValues(h) == "1", "its values are counted while it is kept")
        h.send(1, .retire([1]))
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 5, value: 2)]))
        #expect(h.value("app_jobs{process=\"new\",pid=\"2\"}") == "2")
        #expect(h.registry.conflictInvariantViolations == [])
    }

    /// A kept declaration declared again unchanged keeps its place, as a waiting one does: it was
    /// forgotten and refused anew, counted as a second conflict, and queued behind the declarations kept
    /// on its name after it, so another connection got the name once it was free.
    @Test func aKeptDeclarationDeclaredAgainUnchangedKeepsItsPlace() {
        let h = Harness()
        let first = SeriesDeclaration(id: 1, type: .gauge, name: "app_x", help: "", labels: [Label("v", "1")])
        let second = SeriesDeclaration(id: 1, type: .gauge, name: "app_x", help: "", labels: [Label("w", "2")])
        h.connect(1, process: "old", declaring: [SeriesDeclaration(id: 1, type: .counter, name: "app_x", help: "")])
        h.connect(2, process: "first", declaring: [first])
        h.connect(3, process: "second", declaring: [second])
        #expect(h.dropped(.conflict) == "2")
        h.send(2, .declare([first]))
        #expect(h.dropped(.conflict) == "2", "the same declaration again is not another conflict")
        // Once the counter goes, the kept ones are tried in the order they were refused: the first takes
        // the name with its label set, and the second, with another, clashes with it.
        h.send(1, .retire([1]))
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 1, value: 1)]))
        h.send(3, .values([ValueUpdate(id: 1, value: 2)]))
        #expect(h.value("app_x{process=\"first\",pid=\"2\",v=\"1\"}") == "1")
        #expect(h.value("app_x{process=\"second\",pid=\"3\",w=\"2\"}") == nil)
        #expect(h.registry.conflictInvariantViolations == [])
    }

    /// A kept declaration tried again at the tick is a new declaration of its connection: it does not
    /// take room that frees under `--ingest.max-series` from a declaration of another connection that
    /// waited for it since before. The tick tried the kept ones before the waiting ones, so a holder that
    /// said goodbye and closed (freeing the room and the name at once, with no frame after) gave its
    /// place to the kept declaration, and the one refused earlier went on waiting.
    @Test func aKeptDeclarationDoesNotTakeRoomFromOneWaitingSinceBefore() {
        var limits = RegistryLimits()
        limits.maxSeries = 3
        let h = Harness(limits: limits)
        h.connect(1, process: "one", declaring: [SeriesDeclaration(id: 1, type: .gauge, name: "app_one", help: "")])
        h.connect(2, process: "old", declaring: [SeriesDeclaration(id: 1, type: .counter, name: "app_x", help: "")])
        h.connect(3, process: "new", declaring: [SeriesDeclaration(id: 1, type: .gauge, name: "app_x", help: "")])
        #expect(h.dropped(.conflict) == "1")
        h.connect(
            4, process: "vic",
            declaring: [
                SeriesDeclaration(id: 1, type: .gauge, name: "app_c", help: "", labels: [Label("i", "1")]),
                SeriesDeclaration(id: 2, type: .gauge, name: "app_c", help: "", labels: [Label("i", "2")]),
            ])
        #expect(h.dropped(.globalLimit) == "1", "the second waits")
        h.send(2, .goodbye)
        h.registry.connectionClosed(ConnectionID(2))
        h.registry.tick(nowNanoseconds: 0)
        h.send(4, .values([ValueUpdate(id: 2, value: 2)]))
        h.send(3, .values([ValueUpdate(id: 1, value: 3)]))
        #expect(h.value("app_c{process=\"vic\",pid=\"4\",i=\"2\"}") == "2", "refused first, admitted first")
        #expect(h.value("app_x{process=\"new\",pid=\"3\"}") == nil, "it waits at the cap in turn")
        #expect(h.value("taskwatch_series") == "3")
        #expect(h.registry.conflictInvariantViolations == [])
    }

    /// Kept declarations that clash with each other as well (one name, other label names) are tried
    /// oldest first, as the protocol says: the one refused first gets the name once it frees, whatever
    /// its id or its connection's. They were tried by connection and id, so a connection accepted
    /// earlier, or a lower id, took the name from a declaration refused before it.
    @Test func keptDeclarationsAreTriedInTheOrderTheyWereRefused() {
        let h = Harness()
        h.connect(1, process: "old", declaring: [SeriesDeclaration(id: 1, type: .counter, name: "app_x", help: "")])
        h.open(2, pid: 2)
        h.hello(2, process: "early")
        h.connect(
            3, process: "late",
            declaring: [
                SeriesDeclaration(id: 9, type: .gauge, name: "app_x", help: "", labels: [Label("a", "1")])
            ])
        h.send(
            2, .declare([SeriesDeclaration(id: 1, type: .gauge, name: "app_x", help: "", labels: [Label("b", "1")])]))
        h.send(
            3, .declare([SeriesDeclaration(id: 2, type: .gauge, name: "app_x", help: "", labels: [Label("c", "1")])]))
        #expect(h.dropped(.conflict) == "3")
        h.send(1, .retire([1]))
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 1, value: 2)]))
        h.send(3, .values([ValueUpdate(id: 9, value: 9), ValueUpdate(id: 2, value: 3)]))
        #expect(h.value("app_x{process=\"late\",pid=\"3\",a=\"1\"}") == "9", "refused first, admitted")
        #expect(h.value("taskwatch_series") == "1")
        // The one admitted goes: the next oldest gets the name.
        h.send(3, .retire([9]))
        h.registry.tick(nowNanoseconds: 0)
        h.send(2, .values([ValueUpdate(id: 1, value: 2)]))
        h.send(3, .values([ValueUpdate(id: 2, value: 3)]))
        #expect(h.value("app_x{process=\"early\",pid=\"2\",b=\"1\"}") == "2")
        #expect(h.value("taskwatch_series") == "1")
        #expect(h.registry.conflictInvariantViolations == [])
    }

    /// A tick gives freed room to one batch of waiting declarations, kept ones tried or not: trying the
    /// waiting ones again after the kept ones, whenever a try was still due, made a tick with a long
    /// backlog admit two batches.
    @Test func aTickAdmitsOneBatchOfWaitingDeclarations() {
        let batch = Registry.pendingRetryBatch
        var limits = RegistryLimits()
        limits.maxSeries = 3 * batch
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: RegistryPendingTests.hogGauges(3 * batch))
        h.connect(2, process: "vic", declaring: RegistryPendingTests.victimGauges(3 * batch))
        h.send(1, .goodbye)
        h.registry.connectionClosed(ConnectionID(1))
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value("taskwatch_series") == "\(batch)")
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value("taskwatch_series") == "\(2 * batch)")
    }

    /// What kept declarations are counted as covers what they take on the heap, as for waiting ones:
    /// the index of the names each is kept under included. A histogram is kept under five names (its
    /// own, `_bucket`, `_sum`, `_count`, `_created`), each a string as long as its name, with a table
    /// of connections and a set of ids for each: a review counted a fifth of the heap they took, so
    /// the byte bounds let kept declarations take five times what the budget says.
    @Test func theCostOfAKeptDeclarationCoversItsHeap() {
        let h = Harness()
        let stem = String(repeating: "n", count: 240)
        let count = 2_000
        // Each histogram `<stem>_<i>` clashes with the gauge `<stem>_<i>_sum` of another connection.
        let holders = (0..<count).map {
            SeriesDeclaration(id: UInt32($0), type: .gauge, name: "\(stem)_\($0)_sum", help: "")
        }
        for start in stride(from: 0, to: count, by: 200) {
            if start == 0 {
                h.connect(1, process: "old", declaring: Array(holders[0..<200]))
            } else {
                h.send(1, .declare(Array(holders[start..<(start + 200)])))
            }
        }
        h.open(2, pid: 2)
        h.hello(2, process: "new")
        let kept = (0..<count).map {
            SeriesDeclaration(id: UInt32($0), type: .histogram, name: "\(stem)_\($0)", help: "", bounds: [1])
        }
        let encoded = stride(from: 0, to: count, by: 200).flatMap {
            FrameEncoder.encode(.declare(Array(kept[$0..<($0 + 200)])))
        }
        let before = tw_heap_stats_read().in_use_bytes
        for bytes in encoded { h.send(2, bytes) }
        let grown = Int(tw_heap_stats_read().in_use_bytes) - Int(before)
        #expect(h.dropped(.conflict) == "\(count)")
        #expect(grown > 0)
        #expect(
            h.registry.conflicted.bytes >= grown,
            "counted \(h.registry.conflicted.bytes) bytes for \(grown) allocated")
    }

    /// A seeded random walk over declares, retires, values, closes, takeovers and ticks, with names that
    /// clash in every way (a counter's name without `_total`, a histogram's derived names, other label
    /// names), checking after every step that the counts of kept and waiting declarations match what is
    /// held, that each kept one is either due or listed under all its names, that none is left waiting
    /// on names nobody holds, and that `/metrics` never shows a family or a series twice.
    @Test(arguments: 1...24 as ClosedRange<UInt64>)
    func aRandomWalkKeepsTheConflictCountsAndIndexes(_ seed: UInt64) {
        var limits = RegistryLimits()
        limits.maxSeriesPerClient = 5
        limits.maxSeries = 12
        limits.graceNanoseconds = 2_000_000_000
        // Every third walk with a cap per uid, every third with a small byte budget per connection.
        if seed % 3 == 1 { limits.maxSeriesPerUID = 6 }
        if seed % 3 == 2 { limits.maxLabelBytesPerClient = 1_200 }
        let h = Harness(limits: limits)
        var random = SplitMix(seed: seed)
        let names = ["a", "a_total", "a_count", "a_sum", "a_created", "b", "b_peak"]
        let types: [SeriesType] = [.counter, .gauge, .histogram]
        let labelSets: [[Label]] = [[], [Label("x", "1")], [Label("y", "1")], [Label("x", "2")]]
        func declaration(id: UInt32) -> SeriesDeclaration {
            let type = types[random.below(types.count)]
            return SeriesDeclaration(
                id: id, type: type, name: names[random.below(names.count)], help: "",
                labels: labelSets[random.below(labelSets.count)], bounds: type == .histogram ? [1] : [])
        }
        // Slot s is pid s, process `p<s>`; each connection is a new ConnectionID.
        var current: [Int: UInt64] = [:]
        var open: Set<UInt64> = []
        var next: UInt64 = 1
        func connect(_ slot: Int) {
            let connection = next
            next += 1
            h.open(connection, pid: Int32(slot), uid: UInt32(1000 + slot % 2))
            h.hello(connection, process: "p\(slot)")
            current[slot] = connection
            open.insert(connection)
        }
        for slot in 1...4 { connect(slot) }
        for step in 0..<1_000 {
            let slot = 1 + random.below(4)
            guard let connection = current[slot] else { continue }
            let id = UInt32(random.below(8))
            let what = random.below(100)
            switch what {
            case 0..<40:
                let count = 1 + random.below(3)
                h.send(connection, .declare((0..<count).map { _ in declaration(id: UInt32(random.below(8))) }))
            case 40..<60:
                h.send(connection, .retire([id]))
            case 60..<66:
                h.send(connection, .values([ValueUpdate(id: id, value: 1)]))
            case 66..<70:
                h.send(connection, .peaks([PeakSample(id: id, value: 1)]))
            case 70..<76:
                if random.below(2) == 0 { h.send(connection, .goodbye) }
                h.registry.connectionClosed(ConnectionID(connection))
                open.remove(connection)
                connect(slot)
            case 76..<80:
                // A new connection of the same process takes over, the old one still open.
                connect(slot)
            case 80..<92:
                h.registry.tick(nowNanoseconds: 0)
            default:
                h.clock.advance(seconds: 1)
                h.registry.tick(nowNanoseconds: 0)
            }
            let problems = h.registry.conflictInvariantViolations
            #expect(problems == [], "seed \(seed), step \(step)")
            if !problems.isEmpty { return }
            if step % 5 == 0 {
                let lines = h.text().split(separator: "\n")
                let types = lines.filter { $0.hasPrefix("# TYPE ") }
                #expect(Set(types).count == types.count, "seed \(seed), step \(step): a family twice")
                let series = lines.filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ")[0] }
                #expect(Set(series).count == series.count, "seed \(seed), step \(step): a series twice")
            }
        }
        for connection in open { h.registry.connectionClosed(ConnectionID(connection)) }
        h.clock.advance(seconds: 10)
        for _ in 0..<4 { h.registry.tick(nowNanoseconds: 0) }
        #expect(h.registry.conflicted == (0, 0))
        #expect(h.registry.conflictRetries.queued == 0)
        #expect(h.registry.pendingBytes == 0)
        #expect(h.registry.conflictInvariantViolations == [])
    }
}

/// A small seeded generator, so that a failing walk can be replayed.
struct SplitMix {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
