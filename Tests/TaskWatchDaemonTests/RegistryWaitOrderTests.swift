import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

/// Room freed goes to the declarations that have waited longest, over all connections, and a new
/// declaration that needs the same room waits behind them. Before, waiting declarations were tried only
/// at their own connection's next frame, and a new one was tried at once: the first to send a frame
/// after room freed took it.
@Suite struct RegistryWaitOrderTests {
    typealias P = RegistryPendingTests

    static func gauge(_ id: UInt32, _ name: String) -> SeriesDeclaration {
        SeriesDeclaration(id: id, type: .gauge, name: name, help: "", labels: [])
    }

    /// The review's run, `--ingest.max-series 4`: a client retires a series and declares it again, in
    /// a loop, while another's declaration waits. Its frames came between the churner's retire and
    /// declare only by luck, so the churner took the freed place at every cycle (482 in 5 s) and the
    /// waiting one never came in. Now the place a retire frees goes to the waiting declaration at once,
    /// and the churner's declaration waits behind.
    @Test func aClientChurningAtTheCapNoLongerKeepsAWaitingDeclarationOut() {
        var limits = RegistryLimits()
        limits.maxSeries = 4
        let h = Harness(limits: limits)
        let hog = P.hogGauges(4)
        h.connect(1, process: "hog", declaring: hog)
        h.connect(2, process: "vic", declaring: [tasksGauge])
        #expect(h.dropped(.globalLimit) == "1")
        for cycle in 0..<500 {
            h.send(1, .retire([hog[cycle % 4].id]))
            h.send(1, .declare([hog[cycle % 4]]))
            h.send(2, .values([ValueUpdate(id: 1, value: Double(cycle))]))
        }
        #expect(h.value(P.victimTasks) == "499")
        #expect(h.value("taskwatch_series") == "4")
        // Each of the churner's declarations waited in turn, for the place its next retire freed.
        #expect(h.dropped(.globalLimit) == "501")
        #expect(h.registry.waitQueueTickets <= 2 + 64 + 1)
    }

    /// Three connections wait at the daemon's cap: freed places go one by one in the order refused,
    /// whichever connection frees them or sends a frame first.
    @Test func freedRoomGoesToTheOldestWaitingDeclarationAcrossClients() {
        var limits = RegistryLimits()
        limits.maxSeries = 2
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: P.hogGauges(2))
        h.connect(3, process: "bbb", declaring: [Self.gauge(100, "b_first")])
        h.connect(2, process: "aaa", declaring: [Self.gauge(100, "a_only")])
        h.connect(4, process: "ccc", declaring: [Self.gauge(100, "c_only")])
        h.send(3, .declare([Self.gauge(101, "b_second")]))
        #expect(h.dropped(.globalLimit) == "4")

        func report() {
            for connection in [UInt64(4), 3, 2] {
                let ids: [UInt32] = connection == 3 ? [100, 101] : [100]
                h.send(connection, .values(ids.map { ValueUpdate(id: $0, value: 1) }))
            }
        }
        func shown() -> [String] {
            [
                "b_first{process=\"bbb\",pid=\"3\"}", "a_only{process=\"aaa\",pid=\"2\"}",
                "c_only{process=\"ccc\",pid=\"4\"}", "b_second{process=\"bbb\",pid=\"3\"}",
            ]
            .filter { h.value($0) != nil }.map { String($0.prefix { $0 != "{" }) }
        }
        h.send(1, .retire([10]))
        report()
        #expect(shown() == ["b_first"])
        h.send(1, .retire([11]))
        report()
        #expect(shown() == ["b_first", "a_only"], "not c_only, whose connection sent its frame first")
        // Its own retire frees the place, but the connection's second declaration is not the oldest.
        h.send(3, .retire([100]))
        report()
        #expect(shown() == ["a_only", "c_only"])
        h.send(2, .goodbye)
        h.registry.connectionClosed(ConnectionID(2))
        report()
        #expect(shown() == ["c_only", "b_second"])
        #expect(h.registry.pendingBytes == 0)
        #expect(h.rejected(.unknownSeries) == "0")
    }

    /// Fewer places freed than a try admits at most: they went to the first waiting connection to send
    /// a frame, all of them. Now to the oldest declarations, two of one connection and one of the other.
    @Test func aFewPlacesFreedAreSharedInTheOrderRefused() {
        var limits = RegistryLimits()
        limits.maxSeries = 4
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: P.hogGauges(4))
        h.connect(2, process: "aaa", declaring: [Self.gauge(100, "a_g0")])
        h.connect(3, process: "bbb", declaring: [Self.gauge(100, "b_g0")])
        h.send(2, .declare([Self.gauge(101, "a_g1")]))
        h.send(3, .declare([Self.gauge(101, "b_g1")]))
        h.send(1, .retire([10, 11, 12]))
        let both = [ValueUpdate(id: 100, value: 2), ValueUpdate(id: 101, value: 2)]
        h.send(3, .values(both))
        h.send(2, .values(both))
        #expect(h.value("b_g0{process=\"bbb\",pid=\"3\"}") == "2")
        #expect(h.value("b_g1{process=\"bbb\",pid=\"3\"}") == nil)
        #expect(h.value("a_g0{process=\"aaa\",pid=\"2\"}") == "2")
        #expect(h.value("a_g1{process=\"aaa\",pid=\"2\"}") == "2")
        #expect(droppedValues(h) == "1")
    }

    func droppedValues(_ h: Harness) -> String? {
        h.value("taskwatch_values_dropped_total{reason=\"global_limit\"}")
    }

    /// A declaration waiting at its own connection's cap holds no place for others: a later one of
    /// another connection, waiting at the daemon's cap, takes the place freed; the first is admitted
    /// once its connection retires a series.
    @Test func aDeclarationWaitingAtItsConnectionsCapDoesNotHoldOthersBack() {
        var limits = RegistryLimits()
        limits.maxSeries = 2
        limits.maxSeriesPerClient = 1
        let h = Harness(limits: limits)
        h.connect(2, process: "aaa", declaring: [Self.gauge(100, "a_g0"), Self.gauge(101, "a_g1")])
        #expect(h.dropped(.clientLimit) == "1")
        h.connect(1, process: "hog", declaring: P.hogGauges(1))
        h.connect(3, process: "bbb", declaring: [Self.gauge(100, "b_g0")])
        #expect(h.dropped(.globalLimit) == "1")
        h.send(1, .retire([10]))
        h.send(3, .values([ValueUpdate(id: 100, value: 1)]))
        #expect(h.value("b_g0{process=\"bbb\",pid=\"3\"}") == "1")
        // A newcomer waits behind nothing but the room: full, it waits.
        h.connect(4, process: "ddd", declaring: [Self.gauge(100, "d_g0")])
        #expect(h.dropped(.globalLimit) == "2")
        h.send(2, .retire([100]))
        h.send(2, .values([ValueUpdate(id: 101, value: 3)]))
        #expect(h.value("a_g1{process=\"aaa\",pid=\"2\"}") == "3")
        h.send(4, .values([ValueUpdate(id: 100, value: 1)]))
        #expect(h.value("d_g0{process=\"ddd\",pid=\"4\"}") == nil)
    }

    /// Under `--ingest.max-series-per-uid` the uid's waiting declarations are admitted in order too, and
    /// a new one of the uid waits behind them; another uid's is not held back.
    @Test func aUIDsWaitingDeclarationsAreAdmittedInOrder() {
        var limits = RegistryLimits()
        limits.maxSeriesPerUID = 1
        let h = Harness(limits: limits)
        h.connect(1, uid: 7, process: "hog", declaring: P.hogGauges(1))
        h.connect(2, uid: 7, process: "aaa", declaring: [Self.gauge(100, "a_g0")])
        h.connect(3, uid: 7, process: "bbb", declaring: [Self.gauge(100, "b_g0")])
        #expect(h.dropped(.uidLimit) == "2")
        h.connect(4, uid: 8, process: "oth", declaring: [Self.gauge(100, "o_g0")])
        #expect(h.value("taskwatch_series") == "2")
        h.send(1, .retire([10]))
        h.connect(5, uid: 7, process: "new", declaring: [Self.gauge(100, "n_g0")])
        for connection in [UInt64(5), 3, 2] { h.send(connection, .values([ValueUpdate(id: 100, value: 1)])) }
        #expect(h.value("a_g0{process=\"aaa\",pid=\"2\"}") == "1")
        #expect(h.value("b_g0{process=\"bbb\",pid=\"3\"}") == nil)
        h.send(2, .retire([100]))
        for connection in [UInt64(5), 3] { h.send(connection, .values([ValueUpdate(id: 100, value: 2)])) }
        #expect(h.value("b_g0{process=\"bbb\",pid=\"3\"}") == "2")
        #expect(h.value("n_g0{process=\"new\",pid=\"5\"}") == nil)
        #expect(h.dropped(.uidLimit) == "3")
        for connection in UInt64(1)...5 { h.registry.connectionClosed(ConnectionID(connection)) }
        #expect(h.registry.parkedUIDCount == 0)
        #expect(h.registry.pendingBytes == 0)
    }

    /// A connection that retires its oldest waiting declaration and declares it again, in a loop, moves
    /// its place in the order each time: the tickets left behind are dropped, not piled up.
    @Test func retiringTheOldestWaitingDeclarationInALoopLeavesNoTrail() {
        var limits = RegistryLimits()
        limits.maxSeries = 1
        let h = Harness(limits: limits)
        h.connect(1, process: "hog", declaring: P.hogGauges(1))
        let gauges = (0..<3).map { Self.gauge(UInt32($0), "churn_g\($0)") }
        h.connect(2, process: "churn", declaring: gauges)
        for cycle in 0..<20_000 {
            h.send(2, .retire([gauges[cycle % 3].id]))
            h.send(2, .declare([gauges[cycle % 3]]))
        }
        #expect(h.registry.waitQueueTickets <= 2 * 2 + 64 + 1, "\(h.registry.waitQueueTickets) tickets")
        #expect(h.registry.pendingQueueEntries <= 2 * 3 + 64 + 1)
        // Still in order: the oldest now is the one declared last but two.
        h.send(1, .retire([10]))
        h.send(2, .values(gauges.map { ValueUpdate(id: $0.id, value: 1) }))
        #expect(h.value("churn_g2{process=\"churn\",pid=\"2\"}") == "1")
        #expect(h.value("taskwatch_series") == "1")
    }

    /// The review's run: a uid's clients at `--ingest.max-series-per-uid`, one holding the place and
    /// 1,000 waiting, each retiring its series once admitted and declaring it again. Each retire queued
    /// every connection of the uid set aside again, and all but the first were refused at the cap once
    /// more: 1,000 tries a retire (a release daemon with 4,000 fell from 219,000 frames/s to 21,000 and
    /// took 38 s to read what was sent in 6). Now only as many as the uid has room for are tried.
    @Test func aPlaceFreedUnderAUIDsCapTriesOnlyTheOldestSetAside() {
        var limits = RegistryLimits()
        limits.maxSeriesPerUID = 1
        limits.maxClients = 2_000
        let h = Harness(limits: limits)
        let connections = UInt64(1)...1_001
        for connection in connections {
            h.connect(connection, uid: 7, process: "p\(connection)", declaring: [Self.gauge(1, "g\(connection)")])
        }
        #expect(h.dropped(.uidLimit) == "1000")
        let before = h.registry.waitTries
        for cycle in 0..<300 {
            // Admitted in the order refused: the holder now is the next one in turn.
            let holder = UInt64(cycle % 1_001) + 1
            h.send(holder, .retire([1]))
            h.send(holder, .declare([Self.gauge(1, "g\(holder)")]))
        }
        let tries = h.registry.waitTries - before
        #expect(tries <= 2 * 300, "\(tries) tries for 300 places freed")
        for connection in UInt64(300)...302 { h.send(connection, .values([ValueUpdate(id: 1, value: 5)])) }
        #expect(h.value("g301{process=\"p301\",pid=\"301\"}") == "5", "the oldest, in turn")
        #expect(h.value("taskwatch_series") == "1")
        for connection in connections { h.registry.connectionClosed(ConnectionID(connection)) }
        #expect(h.registry.parkedUIDCount == 0)
        #expect(h.registry.pendingBytes == 0)
    }

    /// Connections of a uid that connect, wait at its cap and close, in a loop, while another of the uid
    /// stays set aside (so no place of the uid frees): the tickets they leave are dropped, not piled up.
    @Test func connectionsSetAsideAtAUIDsCapAndClosingLeaveNoTrail() {
        var limits = RegistryLimits()
        limits.maxSeriesPerUID = 1
        let h = Harness(limits: limits)
        h.connect(1, uid: 7, process: "hold", declaring: [Self.gauge(1, "held")])
        h.connect(2, uid: 7, process: "wait", declaring: [Self.gauge(1, "waits")])
        for connection in UInt64(3)..<5_003 {
            h.connect(connection, uid: 7, process: "c\(connection)", declaring: [Self.gauge(1, "g\(connection)")])
            h.registry.connectionClosed(ConnectionID(connection))
            h.registry.tick(nowNanoseconds: 0)
        }
        #expect(h.registry.parkedUIDTickets <= 2 * 2 + 64 + 1, "\(h.registry.parkedUIDTickets) tickets")
        h.send(1, .retire([1]))
        h.send(2, .values([ValueUpdate(id: 1, value: 4)]))
        #expect(h.value("waits{process=\"wait\",pid=\"2\"}") == "4")
    }
}
