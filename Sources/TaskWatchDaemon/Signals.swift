import Glibc

/// Synchronous signal handling: the signals are blocked in every thread and one thread collects them
/// with `sigtimedwait`, so no code runs in signal context.
public enum Signals {
    /// Blocks `signals` in the calling thread and every thread it creates afterwards. Call before any
    /// thread is started.
    public static func block(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits up to `timeout` for one of `signals`; returns it, or nil on timeout.
    public static func wait(for signals: [Int32], timeout: Duration) -> Int32? {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        let (seconds, attoseconds) = timeout.components
        var spec = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        let received = sigtimedwait(&set, nil, &spec)
        return received > 0 ? received : nil
    }
}
