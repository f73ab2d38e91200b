import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A lock-free histogram with fixed bounds: any thread records, the reporter reads.
///
/// A snapshot is one state of the histogram: its sum is the sum of exactly the observations its
/// buckets count. Read bucket by bucket and then the sum while another thread recorded, 5 to 60 % of
/// snapshots had a sum that counted an observation more or fewer than the buckets
/// (`ProbeReviewTests.aSnapshotTakenWhileThreadsRecordHasASumThatMatchesItsBuckets`). So, as
/// client_golang's histograms do, observations go to one of two halves, the *hot* one: a snapshot makes
/// the other half hot, waits for the observations begun in the now cold half to end (a few
/// instructions each), and moves the cold half's counts and sum into the totals it returns. Recording
/// pays one atomic add more for it (the count of observations begun, which also says which half is
/// hot), and was no slower for it in a release build: 7-8 ns an observation on one thread as before,
/// 17-20 ns instead of 34 with two threads recording into one histogram.
///
/// A snapshot waits at most `longestWait` for an observation to end (its thread preempted in the
/// middle for that long, or gone in a forked child): past that it takes what is there, which may then
/// be that observation's sum without its bucket for a snapshot or two; the observation joins a later
/// snapshot, and later snapshots do not wait for it again. Counts and sum are moved out by exchange, so
/// none is ever lost or counted twice, and no bucket ever goes down.
public final class AtomicHistogram: Sendable {
    /// Upper bounds of the buckets, strictly increasing.
    public let bounds: [Double]
    /// Observations begun (the low 63 bits) and the hot half (the top bit).
    private let begun = Atomic<UInt64>(0)
    /// Each half's per-bucket counts not yet moved into the totals, the first half's then the second's.
    private let counts: [AtomicCell]
    /// Each half's sum of observations not yet moved into the totals, as bits.
    private let sums: [AtomicCell]
    /// What the snapshots have moved out of the halves; one snapshot at a time.
    private let totals: Mutex<Totals>

    private struct Totals {
        var buckets: [UInt64]
        var sum = 0.0
        /// The observations in `buckets`.
        var count: UInt64 = 0
        /// Observations each half had begun and not ended when a snapshot gave up waiting for them.
        var stragglers: [UInt64] = [0, 0]
    }

    private static let countMask: UInt64 = (1 << 63) - 1
    /// The longest a snapshot waits for the observations begun in the cold half to end.
    static let longestWait: UInt64 = 100_000_000

    /// A histogram with the given bounds, which must be finite and strictly increasing.
    public init(bounds: [Double]) {
        self.bounds = bounds
        counts = (0..<2 * (bounds.count + 1)).map { _ in AtomicCell() }
        sums = [AtomicCell(), AtomicCell()]
        totals = Mutex(Totals(buckets: Array(repeating: 0, count: bounds.count + 1)))
    }

    /// Records one observation. Infinite and NaN observations are ignored: one would make the sum
    /// infinite for good, and an infinity of each sign would make it NaN.
    public func record(_ value: Double) {
        guard value.isFinite else { return }
        let bucket = HistogramBounds.bucket(of: value, in: bounds)
        let half = Int(begun.wrappingAdd(1, ordering: .acquiring).oldValue >> 63)
        var current = sums[half].value.load(ordering: .relaxed)
        while true {
            let next = (Double(bitPattern: current) + value).bitPattern
            let (exchanged, original) = sums[half].value.weakCompareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        // The bucket last, releasing: a snapshot that sees the observation counted sees its sum too.
        counts[half &* (bounds.count &+ 1) &+ bucket].value.wrappingAdd(1, ordering: .releasing)
    }

    /// Per-bucket counts (not cumulative, `bounds.count + 1` of them) and the sum of observations.
    public func snapshot() -> (buckets: [UInt64], sum: Double) {
        totals.withLock { totals in
            let before = begun.wrappingAdd(1 << 63, ordering: .acquiringAndReleasing).oldValue
            let cold = Int(before >> 63)
            let width = bounds.count + 1
            let range = cold * width..<(cold + 1) * width
            // Every observation begun before the flip and not in the totals is in the cold half once it
            // ends, but for the hot half's stragglers (no observation has begun there since it was cold).
            let expected = (before & Self.countMask) &- totals.count &- totals.stragglers[cold ^ 1]
            // Known stragglers of the cold half are not waited for again.
            let awaited = expected &- totals.stragglers[cold]
            var spins = 0
            var deadline: UInt64 = 0
            while counts[range].reduce(0, { $0 &+ $1.value.load(ordering: .acquiring) }) < awaited {
                spins += 1
                guard spins > 64 else { continue }
                let now = MonotonicClock.now()
                if deadline == 0 { deadline = now + Self.longestWait }
                if now >= deadline { break }
                sched_yield()
            }
            var moved: UInt64 = 0
            for (index, cell) in counts[range].enumerated() {
                let count = cell.value.exchange(0, ordering: .acquiring)
                totals.buckets[index] &+= count
                moved &+= count
            }
            totals.count &+= moved
            totals.stragglers[cold] = expected > moved ? expected - moved : 0
            totals.sum += Double(bitPattern: sums[cold].value.exchange(0, ordering: .relaxed))
            return (totals.buckets, totals.sum)
        }
    }

    /// Begins an observation that never ends, as one whose thread is gone (in a forked child). For tests.
    func beginAbandonedObservation() {
        begun.wrappingAdd(1, ordering: .relaxed)
    }

    /// The number of observations so far (those being recorded included).
    public var count: UInt64 {
        begun.load(ordering: .relaxed) & Self.countMask
    }
}

/// A heap cell for one atomic, so arrays of atomics have stable addresses.
final class AtomicCell: Sendable {
    let value = Atomic<UInt64>(0)
}
