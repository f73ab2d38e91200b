import CTaskWatchRuntime

/// Counts the tasks spawned through it: live, created, finished by outcome, and a sampled lifetime
/// histogram. Its series carry the label `task` with the monitor's name.
///
/// Monitors are meant to be few and long-lived (one per kind of work). Creating a second monitor with
/// the same name shares the first one's counters, so the series stay unique.
public final class TaskMonitor: Sendable {
    /// The value of the `task` label.
    public let name: String
    @usableFromInline let counters: CounterShards

    /// The monitor everything spawned through `TaskWatch.task` counts in; its name is `default`.
    public static let `default` = TaskMonitor("default")

    /// A monitor named `name`, or a handle on the existing one with that name.
    public init(_ name: String) {
        self.name = name
        counters = MonitorRegistry.shared.counters(for: name)
    }

    /// Counter values at one moment.
    public struct Snapshot: Sendable, Equatable {
        /// Tasks created and not yet finished.
        public var live: UInt64
        /// Tasks created.
        public var created: UInt64
        /// Tasks finished, indexed by `TaskOutcome.rawValue`.
        public var finished: [UInt64]
        /// Timed lifetimes per bucket of `HistogramBounds.taskDuration`, plus `+Inf`.
        public var durationBuckets: [UInt64]
        /// The sum of timed lifetimes in seconds.
        public var durationSum: Double

        /// Tasks finished with `outcome`.
        public func finished(_ outcome: TaskOutcome) -> UInt64 { finished[outcome.rawValue] }
    }

    /// Reads every counter. Finished counts are read before created ones, so `live` never goes negative.
    public func snapshot() -> Snapshot {
        Self.snapshot(of: counters)
    }

    static func snapshot(of counters: CounterShards) -> Snapshot {
        let finished = TaskOutcome.allCases.map { counters.sum(slot: Slot.finished + $0.rawValue) }
        let buckets = (0...HistogramBounds.taskDuration.count).map { counters.sum(slot: Slot.buckets + $0) }
        let sum = Double(counters.sum(slot: Slot.durationNanoseconds)) / 1e9
        let created = counters.sum(slot: Slot.created)
        let done = finished.reduce(0, &+)
        return Snapshot(
            live: created >= done ? created - done : 0,
            created: created,
            finished: finished,
            durationBuckets: buckets,
            durationSum: sum
        )
    }

    /// The live count alone, cheap enough for the reporter's fine-grained peak sampling.
    static func live(of counters: CounterShards) -> UInt64 {
        var done: UInt64 = 0
        for outcome in TaskOutcome.allCases { done &+= counters.sum(slot: Slot.finished + outcome.rawValue) }
        let created = counters.sum(slot: Slot.created)
        return created >= done ? created - done : 0
    }

    /// Counter slots inside a shard.
    @usableFromInline
    enum Slot {
        @usableFromInline static let created = 0
        @usableFromInline static let finished = 1  // + TaskOutcome.rawValue
        @usableFromInline static let durationNanoseconds = 4
        @usableFromInline static let buckets = 5  // + bucket index, 19 buckets
    }

    /// Counts a task as created. Returns its start time if this lifetime is sampled for timing, else 0.
    ///
    /// A quiet reporter sleeps without a timer of its own (see `Reporter`); the first spawn after it
    /// went quiet wakes it, so the burst reaches the daemon within one report interval. The check is
    /// one relaxed load of a flag that only changes when the reporter goes quiet or wakes.
    @inlinable
    func taskCreated() -> UInt64 {
        let created = counters.add(1, slot: Slot.created, shard: CounterShards.currentShard())
        if tw_reporter_is_idle() != 0 { tw_reporter_wake() }
        return created & Profile.timingMask == 0 ? MonotonicClock.now() : 0
    }

    /// Counts a task as finished; `start` is what `taskCreated()` returned.
    @inlinable
    func taskFinished(_ start: UInt64, _ outcome: TaskOutcome) {
        let shard = CounterShards.currentShard()
        if start != 0 {
            let elapsed = MonotonicClock.now() &- start
            counters.add(elapsed, slot: Slot.durationNanoseconds, shard: shard)
            let bucket = HistogramBounds.bucket(ofNanoseconds: elapsed, in: HistogramBounds.taskDurationNanoseconds)
            counters.add(1, slot: Slot.buckets + bucket, shard: shard)
        }
        // Releasing: a reader that sees this finish (acquiring) also sees the creation that preceded it.
        counters.addReleasing(1, slot: Slot.finished + outcome.rawValue, shard: shard)
    }
}
