/// The series the client library sends, as the contract names them (`CONTRACT.md`, "Metric names"):
/// each with its type and its label names.
///
/// A name keeps one type and one label set on `/metrics`, the first declared. An app metric declared
/// under one of these names first (a swift-metrics `Meter("swift_tasks")`, made before any task
/// monitor) would take it from the task series of every process on the host, and the alerts and the
/// dashboard built on them would go blind. So any other declaration of these names, or of a name they
/// put on `/metrics` besides their own, is refused: by the daemon as a `conflict`, and first by the
/// swift-metrics backend.
public enum ContractSeries {
    /// One family: its name as exposed (a counter's with `_total`), type and sorted label names.
    public struct Family: Sendable, Equatable {
        public let name: String
        public let type: SeriesType
        public let labelNames: [String]
    }

    public static let families: [Family] = [
        Family(name: "swift_tasks", type: .gauge, labelNames: ["task"]),
        Family(name: "swift_tasks_peak", type: .gauge, labelNames: ["task"]),
        Family(name: "swift_tasks_created_total", type: .counter, labelNames: ["task"]),
        Family(name: "swift_tasks_finished_total", type: .counter, labelNames: ["outcome", "task"]),
        Family(name: "swift_task_duration_seconds", type: .histogram, labelNames: ["task"]),
        Family(name: "swift_executor_jobs_enqueued_total", type: .counter, labelNames: []),
        Family(name: "swift_executor_lag_seconds", type: .histogram, labelNames: []),
        Family(name: "swift_process_heap_allocated_bytes", type: .gauge, labelNames: []),
        Family(name: "swift_process_heap_free_bytes", type: .gauge, labelNames: []),
        Family(name: "swift_taskwatch_reports_dropped_total", type: .counter, labelNames: []),
        // Beyond the contract's table: the client's count of series it refused itself.
        Family(name: "swift_taskwatch_series_dropped_total", type: .counter, labelNames: []),
    ]

    private static let byName = Dictionary(uniqueKeysWithValues: families.map { ($0.name, $0) })

    /// The names the families put on `/metrics` besides their own (`_bucket`, `_sum`, `_count`, a
    /// counter's name without `_total`, `_created`).
    private static let derivedNames = Set(families.flatMap { $0.type.derivedNames(of: $0.name) })

    /// Whether a series of `name` (as exposed), `type` and sorted `labelNames` may be declared as far as
    /// the contract's names go: one of them exactly as the contract has it, or a name that touches none
    /// of them.
    public static func admits(name: String, type: SeriesType, labelNames: [String]) -> Bool {
        guard touches(name: name, type: type) else { return true }
        guard let family = byName[name] else { return false }
        return family.type == type && family.labelNames == labelNames
    }

    /// Whether a series of `name` (as exposed) and `type` would use a name of the contract's families,
    /// its own or one they write besides. The swift-metrics backend refuses every such app metric: even
    /// one of the right shape would be taken for the library's own series.
    public static func touches(name: String, type: SeriesType) -> Bool {
        byName[name] != nil || derivedNames.contains(name)
            || type.derivedNames(of: name).contains { byName[$0] != nil || derivedNames.contains($0) }
    }
}
