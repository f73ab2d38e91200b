/// The highest value seen within a sliding time window, in amortised O(1) per sample.
///
/// A monotonic deque: each sample evicts every older sample that is not larger, so the front is always
/// the window's maximum and the deque holds at most one entry per report within the window.
struct PeakWindow {
    private var times: [UInt64] = []
    private var values: [Double] = []
    private var head = 0

    mutating func add(_ value: Double, at now: UInt64) {
        while values.count > head, values[values.count - 1] <= value {
            times.removeLast()
            values.removeLast()
        }
        times.append(now)
        values.append(value)
    }

    /// The maximum of the samples no older than `window` nanoseconds, or nil when there are none.
    mutating func maximum(at now: UInt64, window: UInt64) -> Double? {
        while head < times.count, now &- times[head] > window { head += 1 }
        if head > 64, head * 2 > times.count {
            times.removeFirst(head)
            values.removeFirst(head)
            head = 0
        }
        return head < values.count ? values[head] : nil
    }
}
