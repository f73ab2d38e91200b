// `addImmediateTask` (SE-0472) on task groups, counted. An immediate child starts running synchronously
// in the caller's context when its operation's isolation allows it, so the wrapper keeps that isolation
// as `TaskMonitor.immediate` does: `wrap` isolates it to the operation's own actor. A nonisolated
// wrapper around an operation isolated to the caller's actor would start at once but must then hop to
// the actor the caller still holds: the child would enqueue instead. The 6.3 group's
// own `addImmediateTask` starts the child at once whatever its isolation: a standalone check on
// 2026-11-30 saw a `@MainActor` child added from a nonisolated caller run while another job held the
// main actor. The counted child waits for the main actor, as `Task.immediate` would.

#if compiler(>=6.2)
    extension TaskGroup {
        /// Like `addImmediateTask`: starts the child at once in the caller's context when `operation`
        /// shares the caller's isolation, counted by `monitor`.
        @inlinable
        public mutating func addImmediateTask(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async -> ChildTaskResult
        ) {
            #if TASKWATCH_SILENT
                addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = monitor.spawnCounts else {
                    addImmediateTask(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                    return
                }
                let start = counts.created()
                addImmediateTask(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like `addImmediateTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
        ///
        /// The cancellation check comes first and the add second, so a group cancelled in between still
        /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
        /// Not the group's own `addImmediateTaskUnlessCancelled`: the child may run to its end inside
        /// that call, so it must be counted as created before, and a refused child would stay counted.
        @inlinable
        @discardableResult
        public mutating func addImmediateTaskUnlessCancelled(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async -> ChildTaskResult
        ) -> Bool {
            guard !isCancelled else { return false }
            addImmediateTask(
                monitor: monitor, name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
            return true
        }
    }

    extension ThrowingTaskGroup {
        /// Like `addImmediateTask`: starts the child at once in the caller's context when `operation`
        /// shares the caller's isolation, counted by `monitor`.
        @inlinable
        public mutating func addImmediateTask(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async throws -> ChildTaskResult
        ) {
            #if TASKWATCH_SILENT
                addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = monitor.spawnCounts else {
                    addImmediateTask(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                    return
                }
                let start = counts.created()
                addImmediateTask(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like `addImmediateTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
        ///
        /// The cancellation check comes first and the add second, so a group cancelled in between still
        /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
        /// Not the group's own `addImmediateTaskUnlessCancelled`: the child may run to its end inside
        /// that call, so it must be counted as created before, and a refused child would stay counted.
        @inlinable
        @discardableResult
        public mutating func addImmediateTaskUnlessCancelled(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async throws -> ChildTaskResult
        ) -> Bool {
            guard !isCancelled else { return false }
            addImmediateTask(
                monitor: monitor, name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
            return true
        }
    }

    extension DiscardingTaskGroup {
        /// Like `addImmediateTask`: starts the child at once in the caller's context when `operation`
        /// shares the caller's isolation, counted by `monitor`.
        @inlinable
        public mutating func addImmediateTask(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async -> Void
        ) {
            #if TASKWATCH_SILENT
                addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = monitor.spawnCounts else {
                    addImmediateTask(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                    return
                }
                let start = counts.created()
                addImmediateTask(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like `addImmediateTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
        ///
        /// The cancellation check comes first and the add second, so a group cancelled in between still
        /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
        /// Not the group's own `addImmediateTaskUnlessCancelled`: the child may run to its end inside
        /// that call, so it must be counted as created before, and a refused child would stay counted.
        @inlinable
        @discardableResult
        public mutating func addImmediateTaskUnlessCancelled(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async -> Void
        ) -> Bool {
            guard !isCancelled else { return false }
            addImmediateTask(
                monitor: monitor, name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
            return true
        }
    }

    extension ThrowingDiscardingTaskGroup {
        /// Like `addImmediateTask`: starts the child at once in the caller's context when `operation`
        /// shares the caller's isolation, counted by `monitor`.
        @inlinable
        public mutating func addImmediateTask(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async throws -> Void
        ) {
            #if TASKWATCH_SILENT
                addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
            #else
                guard let counts = monitor.spawnCounts else {
                    addImmediateTask(
                        name: name, priority: priority, executorPreference: taskExecutor, operation: operation)
                    return
                }
                let start = counts.created()
                addImmediateTask(
                    name: name, priority: priority, executorPreference: taskExecutor,
                    operation: counts.wrap(start, operation))
            #endif
        }

        /// Like `addImmediateTaskUnlessCancelled`, with the child counted by `monitor` when it is added.
        ///
        /// The cancellation check comes first and the add second, so a group cancelled in between still
        /// gets the child; it then starts cancelled, as if it had been added just before the cancellation.
        /// Not the group's own `addImmediateTaskUnlessCancelled`: the child may run to its end inside
        /// that call, so it must be counted as created before, and a refused child would stay counted.
        @inlinable
        @discardableResult
        public mutating func addImmediateTaskUnlessCancelled(
            monitor: TaskMonitor,
            name: String? = nil,
            priority: TaskPriority? = nil,
            executorPreference taskExecutor: consuming (any TaskExecutor)? = nil,
            @_inheritActorContext @_implicitSelfCapture operation:
                sending @escaping @isolated(any) () async throws -> Void
        ) -> Bool {
            guard !isCancelled else { return false }
            addImmediateTask(
                monitor: monitor, name: name, priority: priority, executorPreference: taskExecutor,
                operation: operation)
            return true
        }
    }
#endif
