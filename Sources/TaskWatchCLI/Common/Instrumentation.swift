import TaskWatch

/// What `stress` and `leak` say and do about the client library they run under.
enum Instrumentation {
    /// Why nothing is counted or reported, or nil when it is. A disabled run would otherwise print
    /// figures of zero as if they were measured.
    static func disabledReason(_ configuration: Configuration) -> String? {
        if Profile.name == "silent" { return "instrumentation is compiled out (the Silent trait)" }
        if configuration.isDisabled { return "instrumentation is disabled (TASKWATCH_DISABLED)" }
        return nil
    }

    /// Sends the final counts and waits for them to go out. Without it the daemon keeps the values of
    /// the last scheduled report, up to one `TASKWATCH_INTERVAL` older than the end of the work (with
    /// `2s`, a finished stress run stayed at 2000 live tasks and none finished).
    static func sendFinalReport() {
        TaskWatch.flush(timeout: finalReportTimeout)
    }

    /// The reporter takes the request within 250 ms and a send does not block, so this is only a
    /// bound: a stalled daemon never holds the process for long.
    static let finalReportTimeout: Duration = .seconds(2)
}
