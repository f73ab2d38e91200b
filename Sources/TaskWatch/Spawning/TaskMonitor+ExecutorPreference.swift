// The task-executor-preference forms of `Task.init` and `Task.detached` (SE-0417), counted. Their
// operations are not `@isolated(any)`: a task with an executor preference starts on that executor,
// so there is no caller isolation to keep, and the wrapper is a plain closure (`wrapNonisolated`).

extension TaskMonitor {
    /// Like `Task(executorPreference:priority:operation:)`: runs `operation` as a new top-level task,
    /// preferring `taskExecutor` when it is not nil, counted by this monitor.
    @inlinable
    @discardableResult
    public func task<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async -> Success
    ) -> Task<Success, Never> {
        #if TASKWATCH_SILENT
            return Task(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else {
                return Task(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
            }
            let start = counts.created()
            return Task(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrapNonisolated(start, operation))
        #endif
    }

    /// Like the throwing `Task(executorPreference:priority:operation:)`, counted by this monitor.
    @inlinable
    @discardableResult
    public func task<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async throws -> Success
    ) -> Task<Success, any Error> {
        #if TASKWATCH_SILENT
            return Task(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else {
                return Task(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
            }
            let start = counts.created()
            return Task(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrapNonisolated(start, operation))
        #endif
    }

    /// Like `Task.detached(executorPreference:priority:operation:)`, counted by this monitor.
    @inlinable
    @discardableResult
    public func detached<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async -> Success
    ) -> Task<Success, Never> {
        #if TASKWATCH_SILENT
            return Task.detached(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else {
                return Task.detached(
                    name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
            }
            let start = counts.created()
            return Task.detached(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrapNonisolated(start, operation))
        #endif
    }

    /// Like the throwing `Task.detached(executorPreference:priority:operation:)`, counted by this
    /// monitor.
    @inlinable
    @discardableResult
    public func detached<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async throws -> Success
    ) -> Task<Success, any Error> {
        #if TASKWATCH_SILENT
            return Task.detached(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else {
                return Task.detached(
                    name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
            }
            let start = counts.created()
            return Task.detached(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrapNonisolated(start, operation))
        #endif
    }
}

extension TaskWatch {
    /// `Task(executorPreference:priority:operation:)`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func task<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async -> Success
    ) -> Task<Success, Never> {
        TaskMonitor.default.task(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
    }

    /// The throwing `Task(executorPreference:priority:operation:)`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func task<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async throws -> Success
    ) -> Task<Success, any Error> {
        TaskMonitor.default.task(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
    }

    /// `Task.detached(executorPreference:priority:operation:)`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func detached<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async -> Success
    ) -> Task<Success, Never> {
        TaskMonitor.default.detached(
            name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
    }

    /// The throwing `Task.detached(executorPreference:priority:operation:)`, counted by
    /// `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func detached<Success: Sendable>(
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)?,
        priority: TaskPriority? = nil,
        operation: sending @escaping () async throws -> Success
    ) -> Task<Success, any Error> {
        TaskMonitor.default.detached(
            name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
    }
}
