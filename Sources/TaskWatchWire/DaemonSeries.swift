/// The names the daemon writes on `/metrics` itself, which no client may declare: its own
/// (`taskwatch_*`, `process_*`) and the series it reads from `/proc/<pid>` for each client.
///
/// Here rather than in the daemon so that the swift-metrics backend refuses such a metric in the
/// process, where the refusal is counted per process (`swift_taskwatch_series_dropped_total`), instead
/// of a handler reporting values that the daemon drops.
public enum DaemonSeries {
    /// The series the daemon reads from `/proc/<pid>` for each client, by name: the daemon writes them
    /// under these names and the rule below reserves them, so the two cannot drift apart.
    public enum Kernel {
        public static let cpuSeconds = "swift_process_cpu_seconds_total"
        public static let openFDs = "swift_process_open_fds"
        public static let residentMemoryBytes = "swift_process_resident_memory_bytes"
        public static let startTimeSeconds = "swift_process_start_time_seconds"
        public static let threads = "swift_process_threads"
        public static let virtualMemoryBytes = "swift_process_virtual_memory_bytes"
    }

    /// The series the daemon reads from `/proc/<pid>` for each client.
    public static let kernelNames: Set<String> = [
        Kernel.cpuSeconds, Kernel.openFDs, Kernel.residentMemoryBytes, Kernel.startTimeSeconds,
        Kernel.threads, Kernel.virtualMemoryBytes,
    ]
    /// The kernel counters' family names in OpenMetrics, which drops `_total` from them, and the
    /// `_created` sample names OpenMetrics keeps for them.
    public static let openMetricsFamilyNames: Set<String> = [
        "swift_process_cpu_seconds", "swift_process_cpu_seconds_created",
    ]

    /// Whether a series of `name` (as exposed: a counter's with `_total`) and `type` takes a name the
    /// daemon writes. A counter is checked under its OpenMetrics family name too
    /// (`swift_process_threads_total` would be family `swift_process_threads` there, beside the
    /// daemon's gauge of that name).
    public static func reserves(_ name: String, type: SeriesType) -> Bool {
        if reserves(name) { return true }
        return type == .counter && name.hasSuffix("_total") && reserves(String(name.dropLast(6)))
    }

    private static func reserves(_ name: String) -> Bool {
        name.hasPrefix("taskwatch_") || name.hasPrefix("process_") || kernelNames.contains(name)
            || openMetricsFamilyNames.contains(name)
    }
}
