import Synchronization
import TaskWatchWire

/// Every monitor of the process, by name. Monitors are created rarely, so a lock is fine here; the
/// counters themselves are lock-free.
final class MonitorRegistry: Sendable {
    static let shared = MonitorRegistry()

    /// What the reporter needs about one monitor.
    struct Entry: Sendable {
        let name: String
        let counters: CounterShards
        /// Nil when the series cap was reached when the monitor was created.
        let series: Series?
    }

    /// The ids of one monitor's series.
    struct Series: Sendable {
        let live: SeriesID
        let created: SeriesID
        let finished: [SeriesID]  // by TaskOutcome.rawValue
        let duration: SeriesID
    }

    private let state = Mutex<(byName: [String: Int], entries: [Entry])>(([:], []))

    func counters(for name: String) -> CounterShards {
        state.withLock { state in
            if let index = state.byName[name] { return state.entries[index].counters }
            let counters = CounterShards()
            let entry = Entry(name: name, counters: counters, series: Self.declareSeries(for: name))
            state.byName[name] = state.entries.count
            state.entries.append(entry)
            return counters
        }
    }

    func entries() -> [Entry] {
        state.withLock { $0.entries }
    }

    private static func declareSeries(for name: String) -> Series? {
        let task = Label("task", name)
        let table = SeriesTable.shared
        let descriptors =
            [
                SeriesDescriptor(name: "swift_tasks", help: "Live instrumented tasks.", type: .gauge, labels: [task]),
                SeriesDescriptor(
                    name: "swift_tasks_created_total", help: "Instrumented tasks started.", type: .counter,
                    labels: [task]),
            ]
            + TaskOutcome.allCases.map {
                SeriesDescriptor(
                    name: "swift_tasks_finished_total", help: "Instrumented tasks ended, by outcome.", type: .counter,
                    labels: [task, Label("outcome", $0.label)])
            }
            + [
                SeriesDescriptor(
                    name: "swift_task_duration_seconds", help: "Lifetime of finished instrumented tasks (sampled).",
                    type: .histogram, labels: [task], bounds: HistogramBounds.taskDuration)
            ]
        guard let ids = table.declare(all: descriptors, priority: .monitor) else { return nil }
        return Series(live: ids[0], created: ids[1], finished: Array(ids[2..<5]), duration: ids[5])
    }
}
