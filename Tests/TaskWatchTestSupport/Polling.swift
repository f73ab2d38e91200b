import Glibc

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns whether it held (it
/// is asked once more at the deadline).
public func eventually(
    timeout: Duration = .seconds(10), interval: Duration = .milliseconds(20), _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    let pause = useconds_t(interval / .microseconds(1))
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(pause)
    }
    return try condition()
}
