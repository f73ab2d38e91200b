/// One scrape of the daemon's metrics, with the monotonic time it was taken (for rates) and the Unix
/// time it was taken (for report ages), when known.
struct MetricsSnapshot: Sendable {
    var nanoseconds: UInt64
    var unixSeconds: Double? = nil
    var samples: [PrometheusSample]

    /// Sums of `name` by (process, pid) or by (process, pid, task).
    func values(_ name: String, byTask: Bool = false) -> [ClientKey: Double] {
        values(name, byTask: byTask, combining: +)
    }

    /// The samples of `name` by (process, pid) or by (process, pid, task), several of a key combined.
    func values(_ name: String, byTask: Bool = false, combining: (Double, Double) -> Double) -> [ClientKey: Double] {
        var result: [ClientKey: Double] = [:]
        for sample in samples where sample.name == name {
            let key = ClientKey(
                process: sample.label("process"), pid: sample.label("pid"), task: byTask ? sample.label("task") : "")
            result[key] = result[key].map { combining($0, sample.value) } ?? sample.value
        }
        return result
    }

    func value(_ name: String) -> Double? { samples.first { $0.name == name }?.value }
}

struct ClientKey: Hashable, Sendable {
    var process: String
    var pid: String
    var task: String

    var processKey: ClientKey { ClientKey(process: process, pid: pid, task: "") }
}

/// One line of `taskwatch top`: a task monitor of a connected process.
struct ClientRow: Sendable, Equatable {
    var process: String
    var pid: String
    var task: String
    var up: Bool
    var live: Double?
    var peak: Double?
    var createdPerSecond: Double?
    var finishedPerSecond: Double?
    var rss: Double?
    var heap: Double?
    /// Mean executor lag over the interval (since start when there is no earlier sample).
    var lag: Double?
    /// No executor-lag probe started in an interval of a second or more while the process was
    /// connected: the cooperative pool is blocked (what `SwiftExecutorStalled` alerts on). `lag` is nil.
    var lagStalled = false
    /// Seconds from the process's last accepted report to the scrape.
    var age: Double? = nil
}

/// The columns `taskwatch top` sorts by.
enum TopSort: String, CaseIterable, Sendable {
    case live, peak, created, finished, rss, heap, lag, age, pid, process, task
}

/// Builds, sorts and renders the table of clients from two scrapes.
enum ClientTable {
    static func rows(previous: MetricsSnapshot?, current: MetricsSnapshot) -> [ClientRow] {
        let live = current.values("swift_tasks", byTask: true)
        let peak = current.values("swift_tasks_peak", byTask: true)
        let created = current.values("swift_tasks_created_total", byTask: true)
        let finished = current.values("swift_tasks_finished_total", byTask: true)
        let up = current.values("taskwatch_client_up")
        let rss = current.values("swift_process_resident_memory_bytes")
        let heap = current.values("swift_process_heap_allocated_bytes")
        let lagSum = current.values("swift_executor_lag_seconds_sum")
        let lagCount = current.values("swift_executor_lag_seconds_count")
        // One sample per connection; should two share a process and pid, the newer report counts.
        let lastReport = current.values("taskwatch_client_last_report_timestamp_seconds", combining: max)
        let seconds = previous.map { Double(current.nanoseconds &- $0.nanoseconds) / 1e9 } ?? 0
        let before = previous.map {
            (
                created: $0.values("swift_tasks_created_total", byTask: true),
                finished: $0.values("swift_tasks_finished_total", byTask: true),
                lagSum: $0.values("swift_executor_lag_seconds_sum"),
                lagCount: $0.values("swift_executor_lag_seconds_count")
            )
        }
        func rate(_ now: [ClientKey: Double], _ then: [ClientKey: Double]?, _ key: ClientKey) -> Double? {
            // A series the previous scrape did not have has no rate yet: its counter holds everything
            // since the process started, not what this interval added.
            guard let then, seconds > 0, let value = now[key], let earlier = then[key] else { return nil }
            // A counter that went back means the series restarted: count from zero.
            return (value >= earlier ? value - earlier : value) / seconds
        }
        var keys = Set(live.keys)
        let processesWithTasks = Set(keys.map(\.processKey))
        for key in up.keys where !processesWithTasks.contains(key) {
            keys.insert(ClientKey(process: key.process, pid: key.pid, task: "-"))
        }
        return keys.map { key in
            let process = key.processKey
            var lag: Double?
            var stalled = false
            let connected = (up[process] ?? 0) >= 1
            if let sum = lagSum[process], let count = lagCount[process], count > 0 {
                if let then = before, let sumThen = then.lagSum[process], let countThen = then.lagCount[process] {
                    if count > countThen {
                        lag = (sum - sumThen) / (count - countThen)
                    } else if count < countThen {
                        // The series restarted: all it holds is since then.
                        lag = sum / count
                    } else {
                        // No probe started in the interval. The lifetime mean shown here before looked
                        // healthy while the pool was blocked. A probe is due every 100 ms (10 ms in Stress),
                        // so a second without one is a stall; a shorter interval says nothing.
                        stalled = connected && seconds >= Self.stallSeconds
                    }
                } else {
                    lag = sum / count
                }
            }
            return ClientRow(
                process: key.process, pid: key.pid, task: key.task, up: (up[process] ?? 0) >= 1,
                live: live[key], peak: peak[key],
                createdPerSecond: rate(created, before?.created, key),
                finishedPerSecond: rate(finished, before?.finished, key),
                rss: rss[process], heap: heap[process], lag: lag, lagStalled: stalled,
                // Clamped: a report stamped a moment after the scrape's clock reading is not from the future.
                age: current.unixSeconds.flatMap { now in lastReport[process].map { max(0, now - $0) } })
        }
    }

    /// The shortest interval without a lag probe that `top` calls a stall: ten probe intervals.
    static let stallSeconds = 1.0

    static func sorted(_ rows: [ClientRow], by column: TopSort) -> [ClientRow] {
        func number(_ row: ClientRow) -> Double {
            let value: Double? =
                switch column {
                case .live: row.live
                case .peak: row.peak
                case .created: row.createdPerSecond
                case .finished: row.finishedPerSecond
                case .rss: row.rss
                case .heap: row.heap
                case .lag: row.lagStalled ? .infinity : row.lag
                case .age: row.age
                case .pid: Double(row.pid)
                case .process, .task: nil
                }
            // NaN (any local client may report it) compares neither above nor below anything, which
            // broke the order of the other rows too: it sorts with the unknown values, last.
            guard let value, !value.isNaN else { return -.infinity }
            return value
        }
        return rows.sorted { a, b in
            let tie = (a.process, Int(a.pid) ?? 0, a.task) < (b.process, Int(b.pid) ?? 0, b.task)
            switch column {
            case .process: return tie
            case .task: return (a.task, a.process, Int(a.pid) ?? 0) < (b.task, b.process, Int(b.pid) ?? 0)
            case .pid: return number(a) != number(b) ? number(a) < number(b) : tie
            default: return number(a) != number(b) ? number(a) > number(b) : tie
            }
        }
    }

    /// A column of the table: its header, whether it aligns right (figures do), and its cell.
    struct Column: Sendable {
        var header: String
        var alignsRight: Bool
        var cell: @Sendable (ClientRow) -> String

        init(_ header: String, right: Bool = true, _ cell: @escaping @Sendable (ClientRow) -> String) {
            self.header = header
            self.alignsRight = right
            self.cell = cell
        }

        /// A figure column: `-` when the value is unknown.
        init(
            _ header: String, _ value: @escaping @Sendable (ClientRow) -> Double?,
            _ format: @escaping @Sendable (Double) -> String
        ) {
            self.init(header) { row in value(row).map(format) ?? "-" }
        }
    }

    static let columns: [Column] = [
        Column("PROCESS", right: false) { $0.process + ($0.up ? "" : " (gone)") },
        Column("PID", right: false) { $0.pid },
        Column("TASK", right: false) { $0.task },
        Column("LIVE", \.live, Format.count),
        Column("PEAK", \.peak, Format.count),
        Column("CREATED/s", \.createdPerSecond) { Format.fixed($0, 1) },
        Column("FINISHED/s", \.finishedPerSecond) { Format.fixed($0, 1) },
        Column("RSS", \.rss, Format.bytes),
        Column("HEAP", \.heap, Format.bytes),
        Column("LAG") { row in row.lagStalled ? "stalled" : row.lag.map(Format.seconds) ?? "-" },
        Column("AGE", \.age, Format.age),
    ]

    static var headers: [String] { columns.map(\.header) }

    static func render(_ rows: [ClientRow]) -> String {
        let cells = rows.map { row in columns.map { $0.cell(row) } }
        // In display columns: a CJK or emoji name counted by characters pushed the rest of its row out of line.
        var widths = headers.map { Terminal.width($0) }
        for line in cells {
            for (index, cell) in line.enumerated() { widths[index] = max(widths[index], Terminal.width(cell)) }
        }
        func format(_ line: [String]) -> String {
            line.enumerated().map { index, cell in Format.pad(cell, widths[index], right: columns[index].alignsRight) }
                .joined(separator: "  ")
        }
        return ([format(headers)] + cells.map(format)).joined(separator: "\n")
    }
}
