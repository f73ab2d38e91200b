import Foundation
import Synchronization
import Testing

@testable import TaskWatch

@Suite struct ProbeReviewTests {
    /// A snapshot taken while other threads record is one state of the histogram: its sum is the sum of
    /// the observations its buckets count, never one more or one fewer (as client_golang's histograms
    /// guarantee). Every observation here is 1, so the sum must equal the count exactly. And no bucket
    /// ever goes down from one snapshot to the next (the daemon refuses a report where one does), nor is
    /// an observation lost.
    @Test func aSnapshotTakenWhileThreadsRecordHasASumThatMatchesItsBuckets() async {
        let histogram = AtomicHistogram(bounds: [0.5, 1, 2])
        final class Flag: Sendable {
            let stop = Atomic<Bool>(false)
            let done = Atomic<Int>(0)
        }
        let flag = Flag()
        let writers = 1
        for _ in 0..<writers {
            Thread.detachNewThread {
                while !flag.stop.load(ordering: .relaxed) { histogram.record(1) }
                flag.done.add(1, ordering: .releasing)
            }
        }
        var mismatches = 0
        var decreases = 0
        var snapshots = 0
        var previous = [UInt64](repeating: 0, count: 4)
        let deadline = MonotonicClock.now() + 2_000_000_000
        while MonotonicClock.now() < deadline, snapshots < 200_000 {
            let snapshot = histogram.snapshot()
            let count = snapshot.buckets.reduce(0, +)
            if snapshot.sum != Double(count) { mismatches += 1 }
            if zip(snapshot.buckets, previous).contains(where: { $0 < $1 }) { decreases += 1 }
            previous = snapshot.buckets
            snapshots += 1
        }
        flag.stop.store(true, ordering: .relaxed)
        while flag.done.load(ordering: .acquiring) < writers { usleep(1_000) }
        print("ProbeReviewTests: \(mismatches) of \(snapshots) snapshots had a sum apart from their count")
        #expect(mismatches == 0)
        #expect(decreases == 0)
        let last = histogram.snapshot()
        #expect(last.buckets == [0, histogram.count, 0, 0])
        #expect(last.sum == Double(histogram.count))
    }

    /// An observation that never ends (its thread gone, as in a forked child) holds up one snapshot for
    /// at most `AtomicHistogram.longestWait`, not every snapshot after it, and the others are all there.
    @Test func anObservationThatNeverEndsHoldsUpOneSnapshotAtMost() {
        let histogram = AtomicHistogram(bounds: [1])
        histogram.record(0.5)
        histogram.beginAbandonedObservation()
        histogram.record(2)
        #expect(histogram.snapshot().buckets.reduce(0, +) <= 2)
        #expect(histogram.snapshot().buckets.reduce(0, +) <= 2)
        let start = MonotonicClock.now()
        for _ in 0..<200 {
            histogram.record(0.5)
            _ = histogram.snapshot()
        }
        let elapsed = MonotonicClock.now() - start
        // Waiting every other time (when the half it began in is cold), 200 snapshots take a second.
        #expect(elapsed < 500_000_000, "\(Double(elapsed) / 1e9) s for 200 snapshots")
        let last = histogram.snapshot()
        #expect(last.buckets == [201, 1])
        #expect(last.sum == 102.5)
    }
}
