// `addImmediateTask` (SE-0472) on task groups, counted. An immediate child starts running synchronously
// in the caller's context when its operation's isolation allows it, so the wrapper keeps that isolation
// as `TaskMonitor.immediate` does: `wrap` isolates it to the operation's own actor. A nonisolated
// wrapper around an operation isolated to the caller's actor would start at once but must then hop to
// the actor the caller still holds: the child would enqueue instead.
//
// The 6.3 group's own `addImmediateTask` starts the child on the calling thread whatever its
// isolation: a child isolated to an actor the caller is not on runs on that actor's behalf without
// holding it, concurrently with whatever the actor runs (a `@MainActor` child added from a
// nonisolated caller ran while another job held the main actor). A wrapper of the same isolation
// does the same, so the helpers decide as `Task.immediate` does (`_startsAtOnce`): a child isolated
// to an actor the caller is not on is added as a plain child, enqueued on its actor. The same under
// every trait and with `TASKWATCH_DISABLED`, counted or not.
// `SpawningReviewTests.anImmediateGroupChildIsolatedToAnActorTheCallerIsNotOnWaitsForThatActor`.

import CTaskWatchRuntime

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
            let child = _counted(by: monitor, operation)
            guard _startsAtOnce(_isolation(of: child)) else {
                return addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: child)
            }
            addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: child)
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
            let child = _counted(by: monitor, operation)
            guard _startsAtOnce(_isolation(of: child)) else {
                return addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: child)
            }
            addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: child)
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
            let child = _counted(by: monitor, operation)
            guard _startsAtOnce(_isolation(of: child)) else {
                return addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: child)
            }
            addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: child)
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
            let child = _counted(by: monitor, operation)
            guard _startsAtOnce(_isolation(of: child)) else {
                return addTask(name: name, executorPreference: taskExecutor, priority: priority, operation: child)
            }
            addImmediateTask(name: name, priority: priority, executorPreference: taskExecutor, operation: child)
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

    /// `operation` counted by `monitor` as a child created now, or `operation` itself when nothing
    /// counts (the `Silent` trait, `TASKWATCH_DISABLED`).
    @inlinable
    func _counted<Success: Sendable>(
        by monitor: TaskMonitor, _ operation: sending @escaping @isolated(any) () async -> Success
    ) -> sending @isolated(any) () async -> Success {
        guard let counts = monitor.childCounts else { return _passed(operation) }
        return counts.wrap(counts.created(), operation)
    }

    @inlinable
    func _counted<Success: Sendable>(
        by monitor: TaskMonitor, _ operation: sending @escaping @isolated(any) () async throws -> Success
    ) -> sending @isolated(any) () async throws -> Success {
        guard let counts = monitor.childCounts else { return _passed(operation) }
        return counts.wrap(counts.created(), operation)
    }

    /// `operation` itself, for `_counted`'s path that does not count: returning the parameter there,
    /// where the other path sends it to `wrap`, fails the 6.3 compiler's region check (it merges the
    /// two paths' results with the parameter).
    @inlinable
    func _passed<Success>(
        _ operation: sending @escaping @isolated(any) () async -> Success
    ) -> sending @isolated(any) () async -> Success { operation }

    @inlinable
    func _passed<Success>(
        _ operation: sending @escaping @isolated(any) () async throws -> Success
    ) -> sending @isolated(any) () async throws -> Success { operation }

    /// Whether an immediate child of this isolation may start on the calling thread: when it has none,
    /// or when the caller already runs on its actor's executor. The runtime check `Task.immediate`
    /// makes, with the same flags (`tw_is_current_executor`).
    @inlinable
    func _startsAtOnce(_ isolation: (any Actor)?) -> Bool {
        guard let isolation else { return true }
        let executor = unsafeBitCast(isolation.unownedExecutor, to: (UInt, UInt).self)
        return tw_is_current_executor(UnsafeRawPointer(bitPattern: executor.0), executor.1) != 0
    }
#endif
