/// The counting wrapper around a spawned operation.
///
/// The wrapper must run where the operation would have run: re-wrapping an actor-isolated operation
/// in a nonisolated closure starts the task on the global executor and then hops to the actor, an
/// extra executor hop per task, and tasks spawned after it onto the same actor would overtake it (a
/// plain `Task` is enqueued on its actor at once, in spawn order). So a nonisolated operation gets a
/// nonisolated wrapper (both run on the global executor), and an operation isolated to an actor gets
/// a wrapper isolated to that actor, made by `_isolatedWrapper`; calling the operation from there is
/// a same-executor call, not a hop. Every spawn form goes through it: `Task`-like, detached, group
/// children and immediate tasks.
///
/// The spawn functions take no `isolated` parameter for the caller's actor, though capturing one
/// would isolate a wrapper just as well: with an `isolated` parameter the compiler takes the call for
/// one that stays on the caller's actor and skips its check of the `sending` operation, so a closure
/// that shares an actor's non-Sendable state with the new task compiled, where `Task { … }` refuses
/// it (a review's repro, 2026-11-30; `Tests/TaskWatchClientEndToEndTests/SendingCheckTests.swift`).
///
/// The counting is written out in each wrapper (and in `TaskTicket.run`) rather than shared through
/// one async helper with an `isolated` parameter: tried on 2026-11-30, such a helper cost each
/// wrapped task one more async frame and one more executor switch (the drop-in's own counting went
/// from 1.03 to 1.12 in `ClientMeasure spawn-ab`), and on an actor it made `Task.immediate` suspend
/// before the operation ran.
extension TaskCounts {
    @inlinable
    func wrap<Success: Sendable>(
        _ start: UInt64,
        _ operation: sending @escaping @isolated(any) () async -> Success
    ) -> sending @isolated(any) () async -> Success {
        if let actor = _isolation(of: operation) {
            return _isolatedWrapper(actor, _IsolatedOperation(run: operation), self, start)
        }
        return {
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
        if let actor = _isolation(of: operation) {
            return _isolatedWrapper(actor, _IsolatedThrowingOperation(run: operation), self, start)
        }
        return {
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

/// An operation handed to `_isolatedWrapper`, which only stores it in the closure it returns: the
/// operation is `sending`, so nothing else holds it.
@usableFromInline
struct _IsolatedOperation<Success>: @unchecked Sendable {
    @usableFromInline let run: @isolated(any) () async -> Success
    @inlinable init(run: @escaping @isolated(any) () async -> Success) { self.run = run }
}

@usableFromInline
struct _IsolatedThrowingOperation<Success>: @unchecked Sendable {
    @usableFromInline let run: @isolated(any) () async throws -> Success
    @inlinable init(run: @escaping @isolated(any) () async throws -> Success) { self.run = run }
}

/// A wrapper isolated to `actor`, formed without running on it.
///
/// A closure formed where an `isolated` parameter is in scope, and capturing it, is isolated to that
/// actor (what `TaskMonitor.task` does with the caller's). Here the actor is the operation's, not the
/// caller's, and Swift lets a synchronous function with an `isolated` parameter be called only from
/// that actor. Forming a closure touches none of the actor's state, so the function is called through
/// a bit cast that drops the `isolated` marking: it changes type checking only, not the calling
/// convention. `MonitorTests.operationsIsolatedToAnotherActorKeepTheirOrder` pins the result.
@usableFromInline typealias _Wrapper<Success> = @isolated(any) () async -> Success
@usableFromInline typealias _ThrowingWrapper<Success> = @isolated(any) () async throws -> Success

@inlinable
func _isolatedWrapper<Success: Sendable>(
    _ actor: any Actor,
    _ operation: _IsolatedOperation<Success>,
    _ counts: TaskCounts,
    _ start: UInt64
) -> _Wrapper<Success> {
    typealias Make = (isolated any Actor, _IsolatedOperation<Success>, TaskCounts, UInt64) -> _Wrapper<Success>
    typealias Call = (any Actor, _IsolatedOperation<Success>, TaskCounts, UInt64) -> _Wrapper<Success>
    let make: Make = { isolation, operation, counts, start in
        {
            _ = isolation
            let result = await operation.run()
            counts.finished(start, .returned())
            return result
        }
    }
    return unsafeBitCast(make, to: Call.self)(actor, operation, counts, start)
}

@inlinable
func _isolatedWrapper<Success: Sendable>(
    _ actor: any Actor,
    _ operation: _IsolatedThrowingOperation<Success>,
    _ counts: TaskCounts,
    _ start: UInt64
) -> _ThrowingWrapper<Success> {
    typealias Make = (isolated any Actor, _IsolatedThrowingOperation<Success>, TaskCounts, UInt64) ->
        _ThrowingWrapper<Success>
    typealias Call = (any Actor, _IsolatedThrowingOperation<Success>, TaskCounts, UInt64) -> _ThrowingWrapper<Success>
    let make: Make = { isolation, operation, counts, start in
        {
            _ = isolation
            do {
                let result = try await operation.run()
                counts.finished(start, .returned())
                return result
            } catch {
                counts.finished(start, .threw(error))
                throw error
            }
        }
    }
    return unsafeBitCast(make, to: Call.self)(actor, operation, counts, start)
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

/// The actor `operation` is isolated to, if any. A separate function because reading `.isolation` of
/// an `@_inheritActorContext` parameter in place crashes the 6.3 compiler.
///
/// Two overloads, not one taking the throwing type: passing a non-throwing closure where a throwing
/// one is expected wraps it in a conversion thunk, a heap allocation on every spawn.
@inlinable
func _isolation<Success>(of operation: @escaping @isolated(any) () async -> Success) -> (any Actor)? {
    operation.isolation
}

@inlinable
func _isolation<Success>(of operation: @escaping @isolated(any) () async throws -> Success) -> (any Actor)? {
    operation.isolation
}
