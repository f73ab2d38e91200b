import Synchronization

/// When a thread of the daemon last made progress, so that the systemd watchdog and `/-/healthy` see a
/// daemon that runs but no longer works.
///
/// Why: the main thread only waits for signals, so a ping from it proved nothing; a review froze the
/// ingest and HTTP threads and the pings went on. Each loop that must keep turning stamps its own
/// heartbeat at least once a second, and a request handler is timed while it runs.
public final class Heartbeat: Sendable {
    private let last = Atomic<UInt64>(0)

    public init() { beat() }

    /// Records progress now.
    public func beat() { last.store(Heartbeat.now(), ordering: .relaxed) }

    /// `CLOCK_MONOTONIC` nanoseconds of the last `beat()`.
    public var lastBeatNanoseconds: UInt64 { last.load(ordering: .relaxed) }

    /// `CLOCK_MONOTONIC` in nanoseconds, as the registry reads it.
    public static func now() -> UInt64 { SystemClock().monotonicNanoseconds() }
}

/// The requests being handled right now, by when each began.
public final class RequestsInFlight: Sendable {
    private let started = Mutex<(next: UInt64, times: [UInt64: UInt64])>((0, [:]))

    public init() {}

    /// Runs `body` as one request in flight.
    public func track<Result>(_ body: () -> Result) -> Result {
        let now = Heartbeat.now()
        let token = started.withLock { state in
            state.next += 1
            state.times[state.next] = now
            return state.next
        }
        defer { _ = started.withLock { $0.times.removeValue(forKey: token) } }
        return body()
    }

    /// When the oldest request still in flight began, or nil when none is.
    public var oldestStartNanoseconds: UInt64? { started.withLock { $0.times.values.min() } }
}

/// What `Daemon.stall()` checks: each part's progress against one limit.
public struct LivenessCheck: Sendable {
    /// How long a part may go without progress before the daemon counts as stalled.
    public var limit: Duration

    public init(limit: Duration) { self.limit = limit }

    /// Describes the first part that has made no progress for longer than `limit`, or nil when every
    /// part is working. Times are `CLOCK_MONOTONIC` nanoseconds.
    public func stall(
        now: UInt64, ingestBeat: UInt64, acceptBeat: UInt64, oldestRequestStart: UInt64?
    ) -> String? {
        let (seconds, attoseconds) = limit.components
        let limitNanoseconds = UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
        func age(_ since: UInt64) -> UInt64 { now > since ? now - since : 0 }
        func text(_ nanoseconds: UInt64) -> String {
            let tenths = nanoseconds / 100_000_000
            return "\(tenths / 10).\(tenths % 10) s"
        }
        if age(ingestBeat) > limitNanoseconds {
            return "the ingest thread has not run for \(text(age(ingestBeat)))"
        }
        if age(acceptBeat) > limitNanoseconds {
            return "the HTTP accept thread has not run for \(text(age(acceptBeat)))"
        }
        if let oldestRequestStart, age(oldestRequestStart) > limitNanoseconds {
            return "an HTTP request has been in its handler for \(text(age(oldestRequestStart)))"
        }
        return nil
    }
}
