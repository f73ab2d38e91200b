import Glibc

/// The two clocks the daemon reads: monotonic for windows and grace periods, wall for timestamps.
/// A protocol so tests can move time without sleeping.
public protocol DaemonClock: Sendable {
    func monotonicNanoseconds() -> UInt64
    func wallSeconds() -> Double
}

/// The real clocks.
public struct SystemClock: DaemonClock {
    public init() {}

    public func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    public func wallSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
