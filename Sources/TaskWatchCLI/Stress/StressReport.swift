/// How close the feedback loop kept the live count to `--limit`.
struct LimitStats: Codable, Sendable, Equatable {
    var limit: UInt64
    /// Seconds from the start until the live count first reached the limit; nil if it never did.
    var warmupSeconds: Double?
    /// The highest live count measured after warm-up.
    var peakAfterWarmup: Int
    var meanAfterWarmup: Double
    /// The share of steps after warm-up with the live count within 10 % of the limit.
    var fractionWithin10Percent: Double
    var samplesAfterWarmup: Int
}

/// The final report of one stress run; `--json` prints it as is.
struct StressReport: Codable, Sendable, Equatable {
    var mode: String
    /// The client library's build profile (`production`, `stress` or `silent`).
    var profile: String
    /// `TASKWATCH_DISABLED` was set: nothing was counted or reported, whatever the profile.
    var instrumentationDisabled: Bool
    /// Stopped by SIGINT or SIGTERM: the jobs in flight were cancelled and those queued dropped, so
    /// fewer jobs ended than were submitted, or ended early.
    var interrupted = false
    /// Jobs submitted.
    var jobs: Int
    /// Jobs that ended, after their hold or cancelled.
    var jobsEnded: Int
    var concurrency: Int?
    var holdSeconds: Double
    var peakLiveTasks: Int
    var peakJobsInFlight: Int
    var before: MemorySample
    /// Memory at the sample with the most outstanding work.
    var atPeak: MemorySample
    var liveTasksAtPeakSample: Int
    var jobsAtPeakSample: Int
    /// Heap in use at the peak sample minus before, divided by live tasks then.
    var heapBytesPerLiveTask: Double
    var rssBytesPerLiveTask: Double
    /// The same deltas divided by the jobs in flight then (queued ones included, for the pool).
    var heapBytesPerJob: Double
    var rssBytesPerJob: Double
    /// Jobs per second while submitting.
    var creationRate: Double
    /// Jobs per second from the first completion to the last.
    var completionRate: Double
    var submitSeconds: Double
    /// From the last submission to the last completion.
    var drainSeconds: Double
    var afterDrain: MemorySample
    /// After `malloc_trim(0)`.
    var afterTrim: MemorySample
    var trimReleasedMemory: Bool
    var limitStats: LimitStats?

    /// The report's rows, label and value, for the text and side-by-side forms.
    var rows: [(String, String)] {
        let disabled = ", instrumentation disabled (TASKWATCH_DISABLED)"
        var rows: [(String, String)] = [
            ("mode", interrupted ? "\(mode) (interrupted)" : mode),
            ("profile", profile + (instrumentationDisabled ? disabled : "")),
            ("jobs", String(jobs)),
            ("jobs ended", String(jobsEnded)),
            ("concurrency", concurrency.map(String.init) ?? "unbounded"),
            ("hold", Format.seconds(holdSeconds)),
            ("peak live tasks", String(peakLiveTasks)),
            ("peak jobs in flight", String(peakJobsInFlight)),
            ("heap per live task", Format.bytes(heapBytesPerLiveTask)),
            ("RSS per live task", Format.bytes(rssBytesPerLiveTask)),
            ("heap per job in flight", Format.bytes(heapBytesPerJob)),
            ("RSS per job in flight", Format.bytes(rssBytesPerJob)),
            ("creation rate", Format.count(creationRate) + "/s"),
            ("completion rate", Format.count(completionRate) + "/s"),
            ("submit time", Format.seconds(submitSeconds)),
            ("drain time", Format.seconds(drainSeconds)),
            ("RSS before", Format.bytes(before.rssBytes)),
            ("RSS at peak", Format.bytes(atPeak.rssBytes)),
            ("heap at peak", Format.bytes(atPeak.heapInUseBytes)),
            ("RSS after drain", Format.bytes(afterDrain.rssBytes)),
            ("heap free after drain", Format.bytes(afterDrain.heapFreeBytes)),
            ("RSS after malloc_trim", Format.bytes(afterTrim.rssBytes)),
        ]
        if let stats = limitStats {
            rows += [
                ("limit", String(stats.limit)),
                ("warm-up", stats.warmupSeconds.map(Format.seconds) ?? "never reached"),
                ("peak after warm-up", String(stats.peakAfterWarmup)),
                ("mean after warm-up", Format.fixed(stats.meanAfterWarmup, 1)),
                ("steps within 10 %", Format.fixed(stats.fractionWithin10Percent * 100, 1) + " %"),
            ]
        }
        return rows
    }

    var text: String {
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { Format.pad($0.0, width) + "  " + $0.1 }.joined(separator: "\n")
    }

    /// Reports side by side, one column each.
    static func sideBySide(_ reports: [StressReport]) -> String {
        guard let first = reports.first else { return "" }
        let table = reports.map(\.rows)
        let labelWidth = first.rows.map(\.0.count).max() ?? 0
        var columnWidths = table.map { rows in rows.map(\.1.count).max() ?? 0 }
        for index in columnWidths.indices { columnWidths[index] = max(columnWidths[index], 12) }
        var lines: [String] = []
        for (row, (label, _)) in first.rows.enumerated() {
            var line = Format.pad(label, labelWidth)
            for (column, rows) in table.enumerated() {
                let value = row < rows.count ? rows[row].1 : ""
                line += "  " + Format.pad(value, columnWidths[column], right: true)
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
