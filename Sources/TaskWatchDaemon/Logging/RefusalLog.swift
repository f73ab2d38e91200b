import Glibc
import Logging
import Synchronization

/// Warnings about clients the daemon refused, rate-limited per reason so that a hostile client cannot
/// flood the log: at most one line a second for each reason, and the next line of a reason after some
/// were held back says how many ("… (17 more since the last line)"). The counters on `/metrics` keep
/// the full totals.
///
/// Callers ask `admit` before building a line, so a refusal that is not logged costs one uncontended
/// lock and no formatting. Only refusal paths come here: accepted frames and clients never do.
public final class RefusalLog: Sendable {
    public let logger: Logger
    private let intervalNanoseconds: UInt64
    private let now: @Sendable () -> UInt64
    private let slots = Mutex<[Key: Slot]>([:])

    /// Literal strings (a counter's name and an enum's raw value), so making a key allocates nothing.
    private struct Key: Hashable {
        let counter: String
        let reason: String
    }

    private struct Slot {
        var loggedAt: UInt64
        var suppressed: Int
    }

    /// - Parameters:
    ///   - intervalNanoseconds: the shortest time between two lines of one reason.
    ///   - now: monotonic nanoseconds; tests pass their own.
    public init(
        logger: Logger,
        intervalNanoseconds: UInt64 = 1_000_000_000,
        now: @escaping @Sendable () -> UInt64 = RefusalLog.monotonicNanoseconds
    ) {
        self.logger = logger
        self.intervalNanoseconds = intervalNanoseconds
        self.now = now
    }

    /// Whether a line for `reason` of `counter` (such as `taskwatch_clients_rejected_total` and
    /// `max_clients`) may be written now: nil when it is held back (and counted), else how many lines of
    /// that reason were held back since the last one written.
    public func admit(counter: String, reason: String) -> Int? {
        // Nothing to count when warnings are not shown at all.
        guard logger.logLevel <= .warning else { return nil }
        let time = now()
        let key = Key(counter: counter, reason: reason)
        return slots.withLock { slots in
            if let slot = slots[key], time &- slot.loggedAt < intervalNanoseconds {
                slots[key]!.suppressed += 1
                return nil
            }
            let suppressed = slots[key]?.suppressed ?? 0
            slots[key] = Slot(loggedAt: time, suppressed: 0)
            return suppressed
        }
    }

    /// Writes one admitted line, telling how many were held back before it.
    public func warning(_ message: String, suppressed: Int, metadata: Logger.Metadata) {
        let text = suppressed > 0 ? "\(message) (\(suppressed) more since the last line)" : message
        logger.warning("\(text)", metadata: metadata)
    }

    public static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
