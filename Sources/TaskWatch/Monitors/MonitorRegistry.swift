import Synchronization
import TaskWatchWire

/// Every monitor of the process, by name. Monitors are created rarely, so a lock is fine here; the
/// counters themselves are lock-free.
final class MonitorRegistry: Sendable {
    static let shared = MonitorRegistry(table: .shared)

    /// What the reporter needs about one monitor.
    struct Entry: Sendable {
        let name: String
        let counters: CounterShards
        /// Nil while the series cap leaves no room for the monitor's series: they are declared once a
        /// retirement may have made some.
        let series: Series?
    }

    /// The ids of one monitor's series.
    struct Series: Sendable {
        let live: SeriesID
        let created: SeriesID
        let finished: [SeriesID]  // by TaskOutcome.rawValue
        let duration: SeriesID
    }

    private struct State {
        var byName: [String: Int] = [:]
        var entries: [Entry] = []
        /// The table's retirement count when monitors without series were last tried.
        var triedAt: UInt64 = 0
    }

    private let table: SeriesTable
    private let state = Mutex(State())
    /// Monitors made so far, readable without the lock: the reporter samples live counts between
    /// reports from the list it took at the last one, and takes it again only when this moved.
    private let made = Atomic<UInt64>(0)

    /// A registry declaring its monitors' series in `table`.
    init(table: SeriesTable) {
        self.table = table
    }

    func counters(for name: String) -> CounterShards { entry(for: name).counters }

    /// The monitor named `name`, made if it is new. Its `name` is the spelling it was made with: the
    /// lookup compares names as `String` does, canonically, so `café` with a precomposed é finds the
    /// monitor made as e and a combining accent, whose series carry that spelling.
    func entry(for name: String) -> Entry {
        let retirements = table.retirements
        return state.withLock { state in
            if let index = state.byName[name] { return state.entries[index] }
            let entry = Entry(
                name: name, counters: CounterShards(), series: declareSeries(for: name, countingDrops: true))
            if entry.series == nil { state.triedAt = retirements }
            state.byName[name] = state.entries.count
            state.entries.append(entry)
            made.add(1, ordering: .releasing)
            return entry
        }
    }

    /// How many monitors have been made; it moves before `entries()` returns the new one. Lock-free.
    var generation: UInt64 { made.load(ordering: .acquiring) }

    /// Every monitor. Monitors made while the cap left no room get their series here once a series
    /// has been retired since they were last tried (each report calls this); a monitor made at the cap
    /// used to stay off `/metrics` for good.
    func entries() -> [Entry] {
        let retirements = table.retirements
        return state.withLock { state in
            if retirements != state.triedAt {
                state.triedAt = retirements
                for index in state.entries.indices where state.entries[index].series == nil {
                    let entry = state.entries[index]
                    // Refused already, and counted then.
                    guard let series = declareSeries(for: entry.name, countingDrops: false) else { break }
                    state.entries[index] = Entry(name: entry.name, counters: entry.counters, series: series)
                }
            }
            return state.entries
        }
    }

    private func declareSeries(for name: String, countingDrops: Bool) -> Series? {
        let task = Label("task", name)
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
        guard let ids = table.declare(all: descriptors, priority: .monitor, countingDrops: countingDrops) else {
            return nil
        }
        return Series(live: ids[0], created: ids[1], finished: Array(ids[2..<5]), duration: ids[5])
    }
}
