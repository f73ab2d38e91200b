import Glibc
import Testing

@testable import TaskWatchDaemon

/// Which connection `HTTPConnectionTable` shuts down to make room, on real socket pairs: the peer of a
/// shut-down socket reads the end of the stream at once, the peer of a kept one finds nothing to read.
@Suite struct HTTPConnectionTableTests {
    /// One socket pair: `server` is recorded in the table, `client` is the peer a test reads from.
    final class Pair {
        let server: Int32
        let client: Int32

        init() throws {
            var fds: [Int32] = [0, 0]
            try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
            server = fds[0]
            client = fds[1]
        }

        /// Whether the server side has been shut down, as the peer sees it without waiting.
        var shutDown: Bool {
            var byte: UInt8 = 0
            return recv(client, &byte, 1, Int32(MSG_DONTWAIT)) == 0
        }

        func close() {
            Glibc.close(server)
            Glibc.close(client)
        }

        deinit { close() }
    }

    func pairs(_ count: Int, in table: HTTPConnectionTable) throws -> [Pair] {
        let pairs = try (0..<count).map { _ in try Pair() }
        for pair in pairs { table.opened(pair.server) }
        return pairs
    }

    @Test func theOldestConnectionWithoutARequestInProgressMakesRoomFirst() throws {
        let table = HTTPConnectionTable()
        let connections = try pairs(3, in: table)
        let now = ContinuousClock.now
        table.requestStarted(connections[0].server, at: now)

        #expect(table.evictOne(at: now))
        #expect(connections.map(\.shutDown) == [false, true, false])
        #expect(table.evictOne(at: now))
        #expect(connections.map(\.shutDown) == [false, true, true])
        // Only a request in progress for less than the grace period is left: no room.
        #expect(!table.evictOne(at: now))
        #expect(!connections[0].shutDown)
        // Past the grace period, a client still reading its answer gives way too.
        #expect(table.evictOne(at: now + HTTPConnectionTable.busyGrace))
        #expect(connections[0].shutDown)
        #expect(!table.evictOne(at: now + .seconds(60)))
    }

    @Test func aConnectionWhoseRequestEndedIsIdleAgain() throws {
        let table = HTTPConnectionTable()
        let connections = try pairs(2, in: table)
        let now = ContinuousClock.now
        table.requestStarted(connections[0].server, at: now)
        table.requestEnded(connections[0].server)
        table.requestStarted(connections[1].server, at: now)
        #expect(table.evictOne(at: now))
        #expect(connections.map(\.shutDown) == [true, false])
    }

    /// Among clients still reading their answers past the grace period, the one whose request has
    /// been in progress longest gives way first, whatever the order the connections were opened in.
    @Test func theLongestRequestInProgressMakesRoomFirstAmongBusyOnes() throws {
        let table = HTTPConnectionTable()
        let connections = try pairs(3, in: table)
        let now = ContinuousClock.now
        table.requestStarted(connections[0].server, at: now)
        table.requestStarted(connections[1].server, at: now - .seconds(5))
        table.requestStarted(connections[2].server, at: now - .seconds(1))

        let later = now + HTTPConnectionTable.busyGrace
        #expect(table.evictOne(at: later))
        #expect(connections.map(\.shutDown) == [false, true, false])
        #expect(table.evictOne(at: later))
        #expect(connections.map(\.shutDown) == [false, true, true])
        #expect(table.evictOne(at: later))
        #expect(connections.map(\.shutDown) == [true, true, true])
    }

    /// A keep-alive connection that serves request after request leaves a heap mark at every change;
    /// the table keeps them in proportion to what is open, and still chooses right.
    @Test func marksOfManyRequestsStayBounded() throws {
        let table = HTTPConnectionTable()
        let connections = try pairs(2, in: table)
        let now = ContinuousClock.now
        for round in 0..<10_000 {
            table.requestStarted(connections[0].server, at: now + .milliseconds(round))
            table.requestEnded(connections[0].server)
            #expect(table.markCount <= 2 * 2 + 64 + 1)
        }
        table.requestStarted(connections[0].server, at: now)
        #expect(table.evictOne(at: now))
        #expect(connections.map(\.shutDown) == [false, true])
    }

    @Test func aClosedConnectionIsNeverChosen() throws {
        let table = HTTPConnectionTable()
        let connections = try pairs(2, in: table)
        table.closed(connections[0].server)
        #expect(table.count == 1)
        #expect(table.evictOne(at: .now))
        #expect(connections.map(\.shutDown) == [false, true])
        table.closed(connections[1].server)
        #expect(table.count == 0)
        #expect(!table.evictOne(at: .now))
    }

    /// An entry whose close was never reported, and whose descriptor number now belongs to another
    /// socket: that socket is left alone and the entry dropped.
    @Test func aReusedDescriptorIsNotShutDown() throws {
        let table = HTTPConnectionTable()
        let recorded = try Pair()
        let other = try Pair()
        table.opened(recorded.server)
        // The number now names the other pair's socket: what a close and a reuse leave behind, made
        // atomic so no other test's descriptor can land on it.
        try #require(dup2(other.server, recorded.server) == recorded.server)

        #expect(!table.evictOne(at: .now))
        #expect(table.count == 0)
        #expect(!other.shutDown)
    }

    @Test func evictionsStillClosingAreBounded() throws {
        let table = HTTPConnectionTable()
        let limit = HTTPConnectionTable.maxPendingEvictions
        let connections = try pairs(limit + 2, in: table)
        for _ in 0..<limit { #expect(table.evictOne(at: .now)) }
        // None of them has been reported closed yet: no more, though idle connections remain.
        #expect(!table.evictOne(at: .now))
        #expect(connections.filter(\.shutDown).count == limit)
        // One closes: room for one more eviction, the next oldest.
        table.closed(connections[0].server)
        #expect(table.evictOne(at: .now))
        #expect(connections[limit].shutDown)
        #expect(!connections[limit + 1].shutDown)
    }
}
