/// One task's place in a monitor's counts, taken where the task is created and run inside its body:
/// the allocation-free way to count a task.
///
/// `TaskMonitor.task` is a drop-in `Task.init`, so it has to wrap the caller's operation in a closure
/// of its own to see the task end, and that closure is a heap allocation on every spawn: most of what
/// a monitored spawn costs over a plain one. A ticket puts the counting inside the caller's own
/// closure instead, which already exists, so a counted spawn allocates nothing more than a plain one:
///
///     let ticket = monitor.ticket()
///     Task { await ticket.run { await handle(request) } }
///
/// The task counts as created when the ticket is taken, so a task waiting for a thread is live, as
/// with `TaskMonitor.task`, and as finished when `run` returns or throws, by the same outcomes. Run
/// every ticket exactly once: a ticket never run stays live, and one run twice counts two endings.
/// Works the same in any spawning API (`Task`, `Task.detached`, task groups).
public struct TaskTicket: Sendable {
    /// Nil when instrumentation is off: `run` only runs the body.
    @usableFromInline let counts: TaskCounts?
    @usableFromInline let start: UInt64

    /// Counts a task as created in `counts`, or nothing when nil.
    @inlinable
    init(counts: TaskCounts?) {
        self.counts = counts
        start = counts?.created() ?? 0
    }

    /// Runs `body` in the caller's isolation and counts the task as finished when it returns or
    /// throws.
    @inlinable
    public func run<Success, Failure: Error>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws(Failure) -> Success
    ) async throws(Failure) -> Success {
        guard let counts else { return try await body() }
        do {
            let result = try await body()
            counts.finished(start, .returned())
            return result
        } catch {
            counts.finished(start, .threw(error))
            throw error
        }
    }
}

extension TaskMonitor {
    /// Counts a task as created and returns the ticket its body runs under; see `TaskTicket`.
    @inlinable
    public func ticket() -> TaskTicket {
        #if TASKWATCH_SILENT
            TaskTicket(counts: nil)
        #else
            TaskTicket(counts: spawnCounts)
        #endif
    }
}

extension TaskWatch {
    /// A ticket of `TaskMonitor.default`; see `TaskTicket`.
    @inlinable
    public static func ticket() -> TaskTicket { TaskMonitor.default.ticket() }
}
