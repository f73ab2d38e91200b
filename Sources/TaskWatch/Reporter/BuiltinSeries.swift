import TaskWatchWire

/// The process-wide series every reporter sends, declared once, before any source's.
struct BuiltinSeries: Sendable {
    let jobsEnqueued: SeriesID
    let executorLag: SeriesID
    let heapAllocated: SeriesID
    let heapFree: SeriesID
    let reportsDropped: SeriesID
    let seriesDropped: SeriesID

    /// How many there are: the room `SeriesTable.shared` keeps for them.
    static let count = 6

    static let shared: BuiltinSeries = {
        let ids =
            SeriesTable.shared.declare(
                all: [
                    SeriesDescriptor(
                        name: "swift_executor_jobs_enqueued_total",
                        help: "Jobs enqueued on the global concurrent executor.", type: .counter),
                    SeriesDescriptor(
                        name: "swift_executor_lag_seconds", help: "Delay from scheduling a probe job to its start.",
                        type: .histogram, bounds: HistogramBounds.executorLag),
                    SeriesDescriptor(
                        name: "swift_process_heap_allocated_bytes", help: "Allocator bytes in use.", type: .gauge),
                    SeriesDescriptor(
                        name: "swift_process_heap_free_bytes",
                        help: "Allocator bytes free but not returned to the system.", type: .gauge),
                    SeriesDescriptor(
                        name: "swift_taskwatch_reports_dropped_total", help: "Reports the client could not send.",
                        type: .counter),
                    SeriesDescriptor(
                        name: "swift_taskwatch_series_dropped_total",
                        help: "Series the client refused: past its cap, outside the protocol's limits, or in conflict.",
                        type: .counter),
                ], priority: .builtin) ?? []
        // The table keeps room for these however many series were declared before the first `start()`,
        // and they are valid, so neither the cap nor the checks can refuse them.
        precondition(ids.count == count, "built-in series must fit the series cap")
        return BuiltinSeries(
            jobsEnqueued: ids[0], executorLag: ids[1], heapAllocated: ids[2], heapFree: ids[3],
            reportsDropped: ids[4], seriesDropped: ids[5])
    }()
}
