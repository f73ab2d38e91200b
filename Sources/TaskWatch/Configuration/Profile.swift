/// The compile-time profile chosen by the package traits.
public enum Profile {
    /// The trait this build was compiled with: `production`, `stress` or `silent`.
    public static let name: String = {
        #if TASKWATCH_SILENT
            "silent"
        #elseif TASKWATCH_STRESS
            "stress"
        #else
            "production"
        #endif
    }()

    /// How often the reporter sends a report.
    public static let reportInterval: Duration = {
        #if TASKWATCH_STRESS
            .milliseconds(1)
        #else
            .milliseconds(10)
        #endif
    }()

    /// How often the reporter schedules an executor-lag probe job.
    public static let probeInterval: Duration = {
        #if TASKWATCH_STRESS
            .milliseconds(10)
        #else
            .milliseconds(100)
        #endif
    }()

    /// Mask on a shard's created count selecting which lifetimes are timed: one in `mask + 1`.
    /// Production times one lifetime in 64 because two clock reads would be a measurable share of a
    /// 1.75 µs spawn; Stress times every one.
    /// Computed, not stored: a stored static is a lazy global behind a `swift_once` check on each
    /// spawn, while this folds to a constant in the caller.
    @inlinable
    static var timingMask: UInt64 {
        #if TASKWATCH_STRESS
            0
        #else
            63
        #endif
    }
}
