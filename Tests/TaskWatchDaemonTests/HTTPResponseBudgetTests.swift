import Glibc
import Synchronization
import Testing

@testable import TaskWatchDaemon

/// How `HTTPResponseBudget` admits, refuses and makes room for response bodies, with time passed in.
@Suite struct HTTPResponseBudgetTests {
    static let mebibyte = 1 << 20

    /// A connection the budget only passes back to `evict`.
    static func connection(_ fd: Int32) -> HTTPResponseBudget.Connection {
        HTTPResponseBudget.Connection(fd: fd, inode: ino_t(fd), device: 0)
    }

    /// Records the connections shut down; `gone` ones report that they are closing already.
    final class Evictions: Sendable {
        private let fds = Mutex<[Int32]>([])
        private let gone: Set<Int32>

        init(gone: Set<Int32> = []) { self.gone = gone }

        func evict(_ connection: HTTPResponseBudget.Connection) -> Bool {
            if gone.contains(connection.fd) { return false }
            fds.withLock { $0.append(connection.fd) }
            return true
        }

        var evicted: [Int32] { fds.withLock { $0 } }
    }

    @discardableResult
    func admit(
        _ budget: HTTPResponseBudget, _ fd: Int32, bytes: Int = mebibyte, at now: ContinuousClock.Instant,
        _ evictions: Evictions = Evictions()
    ) -> HTTPResponseBudget.Lease? {
        if case .admitted(let lease) = budget.admit(bytes, on: Self.connection(fd), at: now, evict: evictions.evict) {
            return lease
        }
        return nil
    }

    func retryAfter(
        _ budget: HTTPResponseBudget, bytes: Int = mebibyte, at now: ContinuousClock.Instant,
        _ evictions: Evictions = Evictions()
    ) -> Int? {
        if case .refused(let seconds) = budget.admit(bytes, on: Self.connection(99), at: now, evict: evictions.evict) {
            return seconds
        }
        return nil
    }

    @Test func bodiesAreAdmittedUpToTheMultipleOfOneThenRefusedWithRetryAfter() {
        let budget = HTTPResponseBudget(limits: .init(multiple: 3, minimumBytes: 0))
        let start = ContinuousClock.now
        let evictions = Evictions()
        for fd in Int32(0)..<3 { #expect(admit(budget, fd, at: start, evictions) != nil) }
        #expect(budget.heldBytes == 3 * Self.mebibyte)
        // None has been held for the grace period, so none gives way: the client is told when one will.
        #expect(retryAfter(budget, at: start, evictions) == 2)
        #expect(retryAfter(budget, at: start + .milliseconds(1_500), evictions) == 1)
        #expect(evictions.evicted.isEmpty)
        #expect(budget.heldBytes == 3 * Self.mebibyte, "a refused body is not held")
    }

    @Test func theFloorAdmitsSmallBodiesWhateverTheMultiple() {
        let budget = HTTPResponseBudget(limits: .init(multiple: 1, minimumBytes: 16 * Self.mebibyte))
        let now = ContinuousClock.now
        for fd in Int32(0)..<16 { #expect(admit(budget, fd, at: now) != nil) }
        #expect(retryAfter(budget, at: now) != nil)
        #expect(HTTPResponseBudget.Limits().limit(admitting: 100 * Self.mebibyte) == 400 * Self.mebibyte)
        #expect(HTTPResponseBudget.Limits().limit(admitting: 1_000) == 16 * Self.mebibyte)
        #expect(HTTPResponseBudget.Limits().limit(admitting: Int.max) == Int.max)
    }

    @Test func bodiesHeldForTheGracePeriodGiveWayOldestFirstAndOnlyAsManyAsNeeded() {
        let budget = HTTPResponseBudget(limits: .init(multiple: 3, minimumBytes: 0))
        let start = ContinuousClock.now
        let evictions = Evictions()
        admit(budget, 0, at: start)
        admit(budget, 1, at: start + .milliseconds(500))
        admit(budget, 2, at: start + .milliseconds(1_000))

        let grace = HTTPConnectionTable.busyGrace
        #expect(admit(budget, 3, at: start + grace, evictions) != nil)
        #expect(evictions.evicted == [0])
        // The evicted body is still held until its connection closes, but no longer counts against new ones.
        #expect(budget.heldBytes == 4 * Self.mebibyte)
        #expect(budget.evictingBytes == Self.mebibyte)
        // The next oldest has been held 1.7 s: not yet.
        #expect(retryAfter(budget, at: start + grace + .milliseconds(200), evictions) == 1)
        #expect(evictions.evicted == [0])
        #expect(admit(budget, 4, at: start + grace + .milliseconds(500), evictions) != nil)
        #expect(evictions.evicted == [0, 1])

    }

    @Test func aLargerBodyNeedsAsManyToGiveWayAsItTakes() {
        let budget = HTTPResponseBudget(limits: .init(multiple: 1, minimumBytes: 3 * Self.mebibyte))
        let start = ContinuousClock.now
        for fd in Int32(0)..<3 { admit(budget, fd, at: start + .milliseconds(Int64(fd))) }
        let evictions = Evictions()
        #expect(admit(budget, 3, bytes: 2 * Self.mebibyte, at: start + .seconds(3), evictions) != nil)
        #expect(evictions.evicted == [0, 1])
        #expect(budget.evictingBytes == 2 * Self.mebibyte)
    }

    @Test func aConnectionAlreadyClosingFreesNothingToCountOn() {
        let budget = HTTPResponseBudget(limits: .init(multiple: 2, minimumBytes: 0))
        let start = ContinuousClock.now
        admit(budget, 0, at: start)
        admit(budget, 1, at: start)
        let evictions = Evictions(gone: [0])
        // 0 is closing on its own; 1 gives way.
        #expect(admit(budget, 2, at: start + .seconds(3), evictions) != nil)
        #expect(evictions.evicted == [1])
        #expect(budget.evictingBytes == Self.mebibyte)
    }

    @Test func releasingGivesTheBytesBackAndATrimFollowsOnlyABurst() throws {
        let budget = HTTPResponseBudget(limits: .init(multiple: 2, minimumBytes: 0))
        let now = ContinuousClock.now
        // One scrape at a time: nothing to give back beyond what the next render reuses.
        let single = try #require(admit(budget, 0, at: now))
        #expect(!budget.release(single))
        #expect(budget.heldBytes == 0)

        let first = try #require(admit(budget, 0, at: now))
        let second = try #require(admit(budget, 1, at: now))
        #expect(!budget.release(first))
        #expect(budget.release(second), "two bodies were held at once")
        #expect(!budget.release(second), "a second release of one body is ignored")
        #expect(budget.heldBytes == 0)

        // An evicted body gives back its bytes once, from both counts.
        let old = try #require(admit(budget, 0, at: now))
        admit(budget, 1, at: now)
        let evictions = Evictions()
        let newer = try #require(admit(budget, 2, at: now + .seconds(3), evictions))
        #expect(budget.evictingBytes == Self.mebibyte)
        _ = budget.release(old)
        #expect(budget.evictingBytes == 0)
        #expect(budget.heldBytes == 2 * Self.mebibyte)
        _ = newer
    }

    @Test func theLeasesKeptStayProportionalToTheBodiesHeld() throws {
        let budget = HTTPResponseBudget(limits: .init(multiple: 4, minimumBytes: 0))
        let now = ContinuousClock.now
        let kept = try #require(admit(budget, 0, at: now))
        for round in 0..<1_000 {
            let lease = try #require(admit(budget, Int32(round % 7 + 1), at: now))
            _ = budget.release(lease)
        }
        #expect(budget.leaseCount <= 2 * 1 + 16 + 1)
        #expect(budget.heldBytes == Self.mebibyte)
        _ = budget.release(kept)
    }

    @Test func theTableShutsDownOnlyTheConnectionNamedIfItIsStillThatSocket() throws {
        let table = HTTPConnectionTable()
        let pairs = try (0..<2).map { _ in try HTTPConnectionTableTests.Pair() }
        for pair in pairs { table.opened(pair.server) }
        func identity(_ fd: Int32) -> HTTPResponseBudget.Connection {
            var status = stat()
            _ = fstat(fd, &status)
            return HTTPResponseBudget.Connection(fd: fd, inode: status.st_ino, device: status.st_dev)
        }
        var stranger = identity(pairs[0].server)
        stranger.inode &+= 1
        #expect(!table.evict(stranger), "another socket now has the number")
        #expect(pairs.map(\.shutDown) == [false, false])

        #expect(table.evict(identity(pairs[0].server)))
        #expect(pairs.map(\.shutDown) == [true, false])
        #expect(table.evict(identity(pairs[0].server)), "already on its way out")
        // The connection limit does not pick it a second time.
        #expect(table.evictOne(at: .now))
        #expect(pairs.map(\.shutDown) == [true, true])

        table.closed(pairs[0].server)
        #expect(!table.evict(identity(pairs[0].server)), "closed")
        #expect(table.count == 1)
    }
}
