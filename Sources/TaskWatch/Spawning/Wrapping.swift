/// The counting wrapper around a spawned operation.
///
/// The wrapper must run where the operation would have run: re-wrapping an actor-isolated operation
/// in a nonisolated closure starts the task on the global executor and then hops to the actor, an
/// extra executor hop per task. `TaskMonitor.task` avoids it in the common case (the operation has
/// the caller's isolation, as `@_inheritActorContext` gives it) by capturing the caller's `isolated`
/// parameter in the wrapper, which makes the wrapper isolated to the same actor; calling the
/// operation from there is a same-executor call, not a hop.
///
/// The counting is written out in each wrapper (and in `TaskTicket.run` and `TaskMonitor.immediate`)
/// rather than shared through one async helper with an `isolated` parameter: tried on 2026-11-30,
/// such a helper cost each wrapped task one more async frame and one more executor switch (the
/// drop-in's own counting went from 1.03 to 1.12 in `ClientMeasure spawn-ab`), and on an actor it
/// made `Task.immediate` suspend before the operation ran.
///
/// The nonisolated wrapper here serves everything else: nonisolated operations (no hop: both run on
/// the global executor), detached tasks and group children (whose `operation` parameters do not
/// inherit isolation, so a capture does not help), and operations isolated to some other actor than
/// the caller's. For an operation isolated to an actor, those pay one hop.
extension TaskCounts {
    @inlinable
    func wrap<Success: Sendable>(
        _ start: UInt64,
        _ operation: sending @escaping @isolated(any) () async -> Success
    ) -> sending @isolated(any) () async -> Success {
        {
            let result = await operation()
            self.finished(start, .returned())
            return result
        }
    }

    @inlinable
    func wrap<Success: Sendable>(
        _ start: UInt64,
        _ operation: sending @escaping @isolated(any) () async throws -> Success
    ) -> sending @isolated(any) () async throws -> Success {
        {
            do {
                let result = try await operation()
                self.finished(start, .returned())
                return result
            } catch {
                self.finished(start, .threw(error))
                throw error
            }
        }
    }
}

extension TaskCounts {
    /// `wrap` for operations without `@isolated(any)` (the executor-preference spawns): converting
    /// one to `@isolated(any)` and back would add a thunk, a heap allocation, per spawn.
    @inlinable
    func wrapNonisolated<Success: Sendable>(
        _ start: UInt64,
        _ operation: sending @escaping () async -> Success
    ) -> sending () async -> Success {
        {
            let result = await operation()
            self.finished(start, .returned())
            return result
        }
    }

    @inlinable
    func wrapNonisolated<Success: Sendable>(
        _ start: UInt64,
        _ operation: sending @escaping () async throws -> Success
    ) -> sending () async throws -> Success {
        {
            do {
                let result = try await operation()
                self.finished(start, .returned())
                return result
            } catch {
                self.finished(start, .threw(error))
                throw error
            }
        }
    }
}

/// Whether `operation` is isolated to exactly `actor` (both nil counts). A separate function because
/// reading `.isolation` of an `@_inheritActorContext` parameter in place crashes the 6.3 compiler.
///
/// Two overloads, not one taking the throwing type: passing a non-throwing closure where a throwing
/// one is expected wraps it in a conversion thunk, a heap allocation on every spawn.
@inlinable
func _sharesIsolation<Success>(
    _ operation: @escaping @isolated(any) () async -> Success,
    _ actor: (any Actor)?
) -> Bool {
    _isSameActor(operation.isolation, actor)
}

@inlinable
func _sharesIsolation<Success>(
    _ operation: @escaping @isolated(any) () async throws -> Success,
    _ actor: (any Actor)?
) -> Bool {
    _isSameActor(operation.isolation, actor)
}

@inlinable
func _isSameActor(_ target: (any Actor)?, _ current: (any Actor)?) -> Bool {
    switch (target, current) {
    case (nil, nil): true
    case (let target?, let current?): target === current
    default: false
    }
}
