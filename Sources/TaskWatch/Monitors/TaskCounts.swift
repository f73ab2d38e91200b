import CTaskWatchRuntime
import Synchronization

/// The spawn and finish path of a monitor: its counter shards as a plain pointer.
///
/// Spawned tasks capture this instead of the `TaskMonitor`. Retaining the one shared monitor object
/// on every spawn and releasing it on every finish made its reference count the most contended cache
/// line of a spawn-heavy process: every spawning and finishing thread wrote to it. A pointer needs no
/// reference counting, and it cannot dangle: `MonitorRegistry` keeps every monitor's shards for the
/// life of the process.
@usableFromInline
struct TaskCounts: @unchecked Sendable {
    // @unchecked: the pointee is only ever accessed through atomics.
    @usableFromInline let base: UnsafeMutablePointer<Atomic<UInt64>>

    init(_ shards: CounterShards) { base = shards.base }

    @inlinable
    @discardableResult
    func add(_ amount: UInt64, slot: Int, shard: Int) -> UInt64 {
        (base + (shard &* CounterShards.slotsPerShard &+ slot)).pointee.wrappingAdd(amount, ordering: .relaxed)
            .newValue
    }

    /// Counts a task as created. Returns its start time if this lifetime is sampled for timing, else 0.
    ///
    /// A quiet reporter sleeps without a timer of its own (see `Reporter`); the first spawn after it
    /// went quiet wakes it, so the burst reaches the daemon within one report interval. The check is
    /// one relaxed load of a flag that only changes when the reporter goes quiet or wakes.
    @inlinable
    func created() -> UInt64 {
        // Sequentially consistent, before the flag's load: see `tw_reporter_is_idle`. The same locked
        // add as a relaxed one on x86.
        let slot = CounterShards.currentShard() &* CounterShards.slotsPerShard &+ TaskMonitor.Slot.created
        let created = (base + slot).pointee.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        if tw_reporter_is_idle() != 0 { tw_reporter_wake() }
        return created & Profile.timingMask == 0 ? MonotonicClock.now() : 0
    }

    /// Counts a task as finished; `start` is what `created()` returned.
    @inlinable
    func finished(_ start: UInt64, _ outcome: TaskOutcome) {
        let shard = CounterShards.currentShard()
        if start != 0 {
            let elapsed = MonotonicClock.now() &- start
            add(elapsed, slot: TaskMonitor.Slot.durationNanoseconds, shard: shard)
            let bucket = HistogramBounds.bucket(ofNanoseconds: elapsed, in: HistogramBounds.taskDurationNanoseconds)
            add(1, slot: TaskMonitor.Slot.buckets + bucket, shard: shard)
        }
        // Releasing: a reader that sees this finish (acquiring) also sees the creation that preceded it.
        (base + (shard &* CounterShards.slotsPerShard &+ TaskMonitor.Slot.finished &+ outcome.rawValue)).pointee
            .wrappingAdd(1, ordering: .releasing)
    }
}
