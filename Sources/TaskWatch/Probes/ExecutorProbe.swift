import Synchronization

/// Measures how long a job waits for a cooperative thread: the reporter thread schedules a tiny
/// detached job stamped with the time, and the job records how late it started.
///
/// At most one probe is outstanding: a starved executor would otherwise pile probes up and make the
/// starvation worse. An outstanding probe still reports its (large) lag when it finally runs.
final class ExecutorProbe: Sendable {
    let histogram = AtomicHistogram(bounds: HistogramBounds.executorLag)
    private let outstanding = Atomic<Bool>(false)

    /// Schedules a probe unless one is still waiting; true when it did (one global enqueue).
    @discardableResult
    func schedule() -> Bool {
        guard !outstanding.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        let scheduled = MonotonicClock.now()
        Task.detached { [self] in
            let lag = MonotonicClock.now() &- scheduled
            histogram.record(Double(lag) / 1e9)
            outstanding.store(false, ordering: .releasing)
        }
        return true
    }
}
