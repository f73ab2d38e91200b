import CTaskWatchRuntime
import TaskWatchWire

/// Counts the tasks spawned through it: live, created, finished by outcome, and a sampled lifetime
/// histogram. Its series carry the label `task` with the monitor's name.
///
/// Monitors are meant to be few and long-lived (one per kind of work). Creating a second monitor with
/// the same name shares the first one's counters, so the series stay unique.
public final class TaskMonitor: Sendable {
    /// The value of the `task` label.
    public let name: String
    @usableFromInline let counters: CounterShards
    /// The same counters as a plain pointer, which is what spawned tasks capture.
    @usableFromInline let counts: TaskCounts
    /// `counts` for spawns to count in, nil when instrumentation is off (`TASKWATCH_DISABLED=1`): the
    /// spawn paths' one check, a field of an object they already hold instead of a lazy global.
    @usableFromInline let spawnCounts: TaskCounts?

    /// `spawnCounts`, and nil under the `Silent` trait too: what a helper that counts in one place for
    /// every trait checks.
    @inlinable
    var childCounts: TaskCounts? {
        #if TASKWATCH_SILENT
            nil
        #else
            spawnCounts
        #endif
    }

    /// The monitor everything spawned through `TaskWatch.task` counts in; its name is `default`.
    public static let `default` = TaskMonitor("default")

    /// A monitor named `name`, or a handle on the existing one with that name.
    ///
    /// An empty name becomes `unnamed`: Prometheus takes an empty label value for no label at all, so
    /// `task=""` would not select the monitor's series. A name longer than 4,096 bytes of UTF-8 is cut
    /// to that, at a character boundary, as the process name and swift-metrics label values are: the
    /// daemon refuses a longer label value, and with it every series of the monitor. `name` is then
    /// `unnamed` or the cut name, and monitors whose names become the same share their counters
    /// (`TaskMonitor("")` with `TaskMonitor("unnamed")`).
    ///
    /// Names are compared as `String` compares them, canonically: `café` with a precomposed é and with
    /// e and a combining accent name one monitor, and `name` is the spelling it was first made with,
    /// the one its series carry.
    public init(_ name: String) {
        let entry = MonitorRegistry.shared.entry(for: Self.label(for: name))
        self.name = entry.name
        counters = entry.counters
        counts = TaskCounts(counters)
        spawnCounts = instrumentationDisabled ? nil : counts
    }

    /// The `task` label value of a monitor named `name`.
    static func label(for name: String) -> String {
        name.isEmpty ? unnamed : Wire.prefix(name, utf8Limit: Wire.maxTextLength)
    }

    /// The name of a monitor made with an empty one.
    static let unnamed = "unnamed"

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

}
