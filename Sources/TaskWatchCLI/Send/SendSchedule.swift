import Glibc

/// When `taskwatch send` reports: at its start, then every `interval` on a fixed grid (a slow send
/// does not make it drift), and never past the end of `--hold`, when it says goodbye.
struct SendSchedule: Sendable, Equatable {
    let interval: UInt64
    /// When the hold ends, in `monotonicNanoseconds`.
    let end: UInt64

    /// After the report due at `due`: when to wake next, and whether a report is due then (false: the
    /// hold ends first, so that is when to stop, not a whole interval later).
    func next(after due: UInt64) -> (at: UInt64, reports: Bool) {
        let next = due + interval
        return next <= end ? (next, true) : (end, false)
    }

    /// Sleeps until `monotonicNanoseconds()` reaches `deadline` or a stop is requested, 100 ms at most at
    /// a time: usleep takes 32 bits of microseconds, so one call could not sleep an interval of an hour
    /// and more, and a signal that comes just before a call is seen within a slice.
    static func sleep(until deadline: UInt64) {
        while !StopSignal.isRequested {
            let now = monotonicNanoseconds()
            guard now < deadline else { return }
            usleep(useconds_t(min(deadline - now, 100_000_000) / 1_000 + 1))
        }
    }
}
