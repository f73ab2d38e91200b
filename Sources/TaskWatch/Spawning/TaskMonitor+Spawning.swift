extension TaskMonitor {
    /// Like `Task.init`: runs `operation` as a new top-level task that inherits the caller's isolation,
    /// priority and task-locals, counted by this monitor.
    @inlinable
    @discardableResult
    public func task<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        @_inheritActorContext @_implicitSelfCapture operation: sending @escaping @isolated(any) () async -> Success
    ) -> Task<Success, Never> {
        #if TASKWATCH_SILENT
            return Task(name: name, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else { return Task(name: name, priority: priority, operation: operation) }
            let start = counts.created()
            return Task(name: name, priority: priority, operation: counts.wrap(start, operation))
        #endif
    }

    /// Like the throwing `Task.init`, counted by this monitor.
    @inlinable
    @discardableResult
    public func task<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        @_inheritActorContext @_implicitSelfCapture operation:
            sending @escaping @isolated(any) () async throws
            -> Success
    ) -> Task<Success, any Error> {
        #if TASKWATCH_SILENT
            return Task(name: name, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else { return Task(name: name, priority: priority, operation: operation) }
            let start = counts.created()
            return Task(name: name, priority: priority, operation: counts.wrap(start, operation))
        #endif
    }

    /// Like `Task.detached`: inherits nothing from the caller, counted by this monitor.
    @inlinable
    @discardableResult
    public func detached<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> Success
    ) -> Task<Success, Never> {
        #if TASKWATCH_SILENT
            return Task.detached(name: name, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else {
                return Task.detached(name: name, priority: priority, operation: operation)
            }
            let start = counts.created()
            return Task.detached(name: name, priority: priority, operation: counts.wrap(start, operation))
        #endif
    }

    /// Like the throwing `Task.detached`, counted by this monitor.
    @inlinable
    @discardableResult
    public func detached<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async throws -> Success
    ) -> Task<Success, any Error> {
        #if TASKWATCH_SILENT
            return Task.detached(name: name, priority: priority, operation: operation)
        #else
            guard let counts = spawnCounts else {
                return Task.detached(name: name, priority: priority, operation: operation)
            }
            let start = counts.created()
            return Task.detached(name: name, priority: priority, operation: counts.wrap(start, operation))
        #endif
    }
}

extension TaskWatch {
    /// `Task.init`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func task<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        @_inheritActorContext @_implicitSelfCapture operation: sending @escaping @isolated(any) () async -> Success
    ) -> Task<Success, Never> {
        TaskMonitor.default.task(name: name, priority: priority, operation: operation)
    }

    /// The throwing `Task.init`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func task<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        @_inheritActorContext @_implicitSelfCapture operation:
            sending @escaping @isolated(any) () async throws
            -> Success
    ) -> Task<Success, any Error> {
        TaskMonitor.default.task(name: name, priority: priority, operation: operation)
    }

    /// `Task.detached`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func detached<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> Success
    ) -> Task<Success, Never> {
        TaskMonitor.default.detached(name: name, priority: priority, operation: operation)
    }

    /// The throwing `Task.detached`, counted by `TaskMonitor.default`.
    @inlinable
    @discardableResult
    public static func detached<Success: Sendable>(
        name: String? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async throws -> Success
    ) -> Task<Success, any Error> {
        TaskMonitor.default.detached(name: name, priority: priority, operation: operation)
    }
}
