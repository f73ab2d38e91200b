/// The highest value seen within a sliding time window, in amortised O(1) per sample and in bounded
/// memory: at most `slotsPerWindow + 2` live entries, however fast samples arrive.
///
/// A monotonic deque: each sample evicts every older entry that is not larger, so the front is always
/// the window's maximum. Time is cut into slots of `window / slotsPerWindow`, and a sample that is not
/// larger than the newest entry of its own slot is folded into it (that entry already stands for the
/// slot's maximum). Without the slots, strictly decreasing samples each kept an entry until the window
/// ended, so memory grew with the ingest rate: one client repeating an id through 5,460-entry peaks
/// frames for 8 s took the daemon from 23 to 553 MB. The samples of one frame share its arrival time,
/// hence one slot, so a frame leaves at most one entry per gauge, however often it repeats an id.
///
/// The price is resolution: an entry lives until its whole slot has left the window, so the reported
/// maximum covers the last `window` and possibly up to one slot (window / 64 rounded up to whole
/// nanoseconds: 234 ms of the default 15 s) before it. It never misses a sample within the window.
struct PeakWindow {
    /// Slots per window: the bound on entries, and the resolution of the window's trailing edge.
    static let slotsPerWindow: UInt64 = 64

    /// Slot start times in nanoseconds (multiples of `slotWidth`), oldest first.
    private var slots: [UInt64] = []
    /// The maximum of each slot's samples not yet superseded by a larger later one.
    private var values: [Double] = []
    /// Entries before `head` have left the window; they are dropped in batches to keep removal O(1).
    private var head = 0
    private let window: UInt64
    private let slotWidth: UInt64

    init(window: UInt64) {
        self.window = window
        // Rounded up, so that a window holds at most `slotsPerWindow` whole slots whatever its length.
        slotWidth = max(1, window / Self.slotsPerWindow + (window % Self.slotsPerWindow == 0 ? 0 : 1))
    }

    /// Live entries, for tests of the memory bound.
    var count: Int { values.count - head }

    mutating func add(_ value: Double, at now: UInt64) {
        let slot = now - now % slotWidth
        while values.count > head, values[values.count - 1] <= value {
            slots.removeLast()
            values.removeLast()
        }
        // A larger entry of this same slot already holds this slot's maximum.
        if values.count > head, slots[slots.count - 1] == slot { return }
        // Expire here as well as in `maximum`, so the bound holds even between reads.
        expire(at: now)
        slots.append(slot)
        values.append(value)
    }

    /// The maximum of the samples of the slots that overlap the last `window` nanoseconds, or nil
    /// when there are none.
    mutating func maximum(at now: UInt64) -> Double? {
        expire(at: now)
        return head < values.count ? values[head] : nil
    }

    /// Drops the entries whose slot ended more than `window` ago, the same inclusive edge as a single
    /// sample exactly `window` old, which still counts.
    private mutating func expire(at now: UInt64) {
        while head < slots.count, now &- slots[head] >= window &+ slotWidth { head += 1 }
        if head > 64, head * 2 > slots.count {
            slots.removeFirst(head)
            values.removeFirst(head)
            head = 0
        }
    }
}
