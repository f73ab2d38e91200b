// `Task.immediate` and `Task.immediateDetached` (SE-0472), counted. An immediate task starts running
// synchronously in the caller's context when the operation's isolation allows it, so the wrapper must
// keep that isolation exactly as `TaskMonitor.task` does: a wrapper isolated to another executor than
// the caller's would start by enqueueing instead, and the task would no longer be immediate.

#if compiler(>=6.2)
    extension TaskMonitor {
        /// Like `Task.immediate`: starts `operation` at once in the caller's context when it shares the
        /// caller's isolation, and runs it as a new top-level task, counted by this monitor.
        @inlinable
        @discardableResult
        public func immediate<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async -> Success
        ) -> Task<Success, Never> {
            #if TASKWATCH_SILENT
                return Task.immediate(
                    name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = spawnCounts else {
                    return Task.immediate(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                }
                let start = counts.created()
                return Task.immediate(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like the throwing `Task.immediate`, counted by this monitor.
        @inlinable
        @discardableResult
        public func immediate<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async throws -> Success
        ) -> Task<Success, any Error> {
            #if TASKWATCH_SILENT
                return Task.immediate(
                    name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = spawnCounts else {
                    return Task.immediate(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                }
                let start = counts.created()
                return Task.immediate(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like `Task.immediateDetached`: starts `operation` at once in the caller's context when it
        /// shares the caller's isolation, and runs it as a new top-level task that inherits neither
        /// priority nor task-locals, counted by this monitor.
        ///
        /// As with the plain one, the operation inherits the caller's isolation all the same
        /// (`@_inheritActorContext(always)`); the wrapper takes the operation's isolation, so on the
        /// caller's actor the task still starts at once.
        @inlinable
        @discardableResult
        public func immediateDetached<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async -> Success
        ) -> Task<Success, Never> {
            #if TASKWATCH_SILENT
                return Task.immediateDetached(
                    name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = spawnCounts else {
                    return Task.immediateDetached(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                }
                let start = counts.created()
                return Task.immediateDetached(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like the throwing `Task.immediateDetached`, counted by this monitor.
        @inlinable
        @discardableResult
        public func immediateDetached<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async throws -> Success
        ) -> Task<Success, any Error> {
            #if TASKWATCH_SILENT
                return Task.immediateDetached(
                    name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = spawnCounts else {
                    return Task.immediateDetached(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                }
                let start = counts.created()
                return Task.immediateDetached(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }
    }

    extension TaskWatch {
        /// `Task.immediate`, counted by `TaskMonitor.default`.
        @inlinable
        @discardableResult
        public static func immediate<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async -> Success
        ) -> Task<Success, Never> {
            TaskMonitor.default.immediate(
                name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
        }

        /// The throwing `Task.immediate`, counted by `TaskMonitor.default`.
        @inlinable
        @discardableResult
        public static func immediate<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async throws -> Success
        ) -> Task<Success, any Error> {
            TaskMonitor.default.immediate(
                name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
        }

        /// `Task.immediateDetached`, counted by `TaskMonitor.default`.
        @inlinable
        @discardableResult
        public static func immediateDetached<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async -> Success
        ) -> Task<Success, Never> {
            TaskMonitor.default.immediateDetached(
                name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
        }

        /// The throwing `Task.immediateDetached`, counted by `TaskMonitor.default`.
        @inlinable
        @discardableResult
        public static func immediateDetached<Success: Sendable>(
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_implicitSelfCapture @_inheritActorContext(always) operation:
                sending @escaping @isolated(any) () async throws -> Success
        ) -> Task<Success, any Error> {
            TaskMonitor.default.immediateDetached(
                name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
        }
    }
#endif
