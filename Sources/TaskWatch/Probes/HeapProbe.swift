import CTaskWatchRuntime

/// Allocator statistics. `mallinfo2` walks every free chunk under each arena's lock (over 1 ms with
/// many threads and chunks), so it runs on the reporter thread only, at most once a second.
struct HeapProbe {
    static let period: UInt64 = 1_000_000_000

    private(set) var allocated: UInt64 = 0
    private(set) var free: UInt64 = 0
    private var next: UInt64 = 0

    mutating func refresh(now: UInt64) {
        guard now >= next else { return }
        let stats = tw_heap_stats_read()
        allocated = stats.in_use_bytes
        free = stats.free_bytes
        next = now + Self.period
    }
}
