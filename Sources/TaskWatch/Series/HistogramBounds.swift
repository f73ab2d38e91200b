/// Bucket bounds shared by the client's histograms.
public enum HistogramBounds {
    /// Task lifetimes: 100 µs to 60 s, roughly 1-2.5-5 per decade; longer lifetimes land in `+Inf`.
    public static let taskDuration: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]

    /// Executor lag: 10 µs to 10 s.
    public static let executorLag: [Double] = [
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1, 2.5, 5, 10,
    ]

    /// The Prometheus client default, for recorders that did not say otherwise.
    public static let prometheusDefault: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// The bucket of `value` for `bounds`: the first bound it does not exceed, or `bounds.count` (`+Inf`).
    @inlinable
    public static func bucket(of value: Double, in bounds: [Double]) -> Int {
        var low = 0
        var high = bounds.count
        while low < high {
            let middle = (low + high) / 2
            if value <= bounds[middle] { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// The same for integer nanoseconds against bounds pre-converted to nanoseconds.
    @inlinable
    static func bucket(ofNanoseconds value: UInt64, in bounds: [UInt64]) -> Int {
        var index = 0
        while index < bounds.count, value > bounds[index] { index += 1 }
        return index
    }

    @usableFromInline
    static let taskDurationNanoseconds: [UInt64] = taskDuration.map { UInt64(($0 * 1e9).rounded()) }
}
