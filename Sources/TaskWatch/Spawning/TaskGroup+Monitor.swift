// Children of task groups counted by a monitor. A child lives from `addTask` to the end of its
// operation, whether or not anyone collects its result. Each helper takes the same optional task
// executor preference as the group's own `addTask`.

extension TaskGroup {
    /// `addTask`, with the child counted by `monitor`.
    @inlinable
    public mutating func addTask(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> ChildTaskResult
    ) {
        #if TASKWATCH_SILENT
            addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = monitor.spawnCounts else {
                addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
                return
            }
            let start = counts.created()
            addTask(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrap(start, operation))
        #endif
    }

    /// `addTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
    ///
    /// The cancellation check comes first and the add second, so a group cancelled in between still
    /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
    @inlinable
    @discardableResult
    public mutating func addTaskUnlessCancelled(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> ChildTaskResult
    ) -> Bool {
        guard !isCancelled else { return false }
        addTask(
            monitor: monitor, name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        return true
    }
}

extension ThrowingTaskGroup {
    /// `addTask`, with the child counted by `monitor`.
    @inlinable
    public mutating func addTask(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async throws -> ChildTaskResult
    ) {
        #if TASKWATCH_SILENT
            addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = monitor.spawnCounts else {
                addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
                return
            }
            let start = counts.created()
            addTask(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrap(start, operation))
        #endif
    }

    /// `addTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
    ///
    /// The cancellation check comes first and the add second, so a group cancelled in between still
    /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
    @inlinable
    @discardableResult
    public mutating func addTaskUnlessCancelled(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async throws -> ChildTaskResult
    ) -> Bool {
        guard !isCancelled else { return false }
        addTask(
            monitor: monitor, name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        return true
    }
}

extension DiscardingTaskGroup {
    /// `addTask`, with the child counted by `monitor`.
    @inlinable
    public mutating func addTask(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> Void
    ) {
        #if TASKWATCH_SILENT
            addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = monitor.spawnCounts else {
                addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
                return
            }
            let start = counts.created()
            addTask(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrap(start, operation))
        #endif
    }

    /// `addTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
    ///
    /// The cancellation check comes first and the add second, so a group cancelled in between still
    /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
    @inlinable
    @discardableResult
    public mutating func addTaskUnlessCancelled(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> Void
    ) -> Bool {
        guard !isCancelled else { return false }
        addTask(
            monitor: monitor, name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        return true
    }
}

extension ThrowingDiscardingTaskGroup {
    /// `addTask`, with the child counted by `monitor`.
    @inlinable
    public mutating func addTask(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async throws -> Void
    ) {
        #if TASKWATCH_SILENT
            addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        #else
            guard let counts = monitor.spawnCounts else {
                addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
                return
            }
            let start = counts.created()
            addTask(
                name: name, executorPreference: taskExecutor, priority: priority,
                operation: counts.wrap(start, operation))
        #endif
    }

    /// `addTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
    ///
    /// The cancellation check comes first and the add second, so a group cancelled in between still
    /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
    @inlinable
    @discardableResult
    public mutating func addTaskUnlessCancelled(
        monitor: TaskMonitor,
        name: String? = nil,
        executorPreference taskExecutor: (any TaskExecutor)? = nil,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async throws -> Void
    ) -> Bool {
        guard !isCancelled else { return false }
        addTask(
            monitor: monitor, name: name, executorPreference: taskExecutor, priority: priority, operation: operation)
        return true
    }
}
