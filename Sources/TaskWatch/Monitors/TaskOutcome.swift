import CTaskWatchRuntime

/// How an instrumented task ended.
public enum TaskOutcome: Int, Sendable, CaseIterable {
    /// The operation returned and the task was not cancelled.
    case success = 0
    /// The operation threw an error other than `CancellationError`.
    case error = 1
    /// The task was cancelled when it ended, or the operation threw `CancellationError`.
    case cancelled = 2

    /// The `outcome` label value.
    public var label: String {
        switch self {
        case .success: "success"
        case .error: "error"
        case .cancelled: "cancelled"
        }
    }

    /// The outcome of an operation that returned normally.
    @inlinable
    static func returned() -> TaskOutcome {
        tw_current_task_is_cancelled() != 0 ? .cancelled : .success
    }

    /// The outcome of an operation that threw `error`.
    @inlinable
    static func threw(_ error: any Error) -> TaskOutcome {
        error is CancellationError || tw_current_task_is_cancelled() != 0 ? .cancelled : .error
    }
}
