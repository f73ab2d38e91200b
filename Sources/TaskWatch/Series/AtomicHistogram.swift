import Synchronization

/// A lock-free histogram with fixed bounds: any thread records, the reporter reads.
public final class AtomicHistogram: Sendable {
    /// Upper bounds of the buckets, strictly increasing.
    public let bounds: [Double]
    private let counts: [AtomicCell]
    private let sumBits = Atomic<UInt64>(0)

    /// A histogram with the given bounds, which must be finite and strictly increasing.
    public init(bounds: [Double]) {
        self.bounds = bounds
        counts = (0...bounds.count).map { _ in AtomicCell() }
    }

    /// Records one observation. Infinite and NaN observations are ignored: one would make the sum
    /// infinite for good, and an infinity of each sign would make it NaN.
    public func record(_ value: Double) {
        guard value.isFinite else { return }
        counts[HistogramBounds.bucket(of: value, in: bounds)].value.wrappingAdd(1, ordering: .relaxed)
        var current = sumBits.load(ordering: .relaxed)
        while true {
            let next = (Double(bitPattern: current) + value).bitPattern
            let (exchanged, original) = sumBits.weakCompareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Per-bucket counts (not cumulative, `bounds.count + 1` of them) and the sum of observations.
    public func snapshot() -> (buckets: [UInt64], sum: Double) {
        (counts.map { $0.value.load(ordering: .relaxed) }, Double(bitPattern: sumBits.load(ordering: .relaxed)))
    }

    /// The number of observations so far.
    public var count: UInt64 {
        counts.reduce(0) { $0 &+ $1.value.load(ordering: .relaxed) }
    }
}

/// A heap cell for one atomic, so arrays of atomics have stable addresses.
final class AtomicCell: Sendable {
    let value = Atomic<UInt64>(0)
}
