import Synchronization
import Testing

@testable import TaskWatch

// The SE-0472 drop-ins: `immediate`, `immediateDetached`, the `TaskWatch` statics and the group helpers.
// `Counter` and `Failure` are in MonitorTests.swift.

extension Counter {
    /// `monitor.immediate` from inside the actor: the operation runs at once, isolated to it, before
    /// the call returns. Returns the value seen right after each call.
    func incrementImmediately(_ monitor: TaskMonitor, count: Int) async -> [Int] {
        var seen: [Int] = []
        for _ in 0..<count {
            let task = monitor.immediate {
                self.assertIsolated()
                self.value += 1
            }
            seen.append(value)
            await task.value
        }
        return seen
    }
}

/// A flag that tasks may raise and tests read.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)

    func raise() { raised.store(true, ordering: .relaxed) }
    var isRaised: Bool { raised.load(ordering: .relaxed) }
}

@Suite struct ImmediateTests {
    @Test func immediateTasksStartSynchronouslyAndAreCounted() async throws {
        let monitor = uniqueMonitor("immediate")
        let n = 20
        for _ in 0..<n {
            let started = Flag()
            let task = monitor.immediate {
                started.raise()
                return 1
            }
            // No suspension in the operation: it ran to its end before `immediate` returned.
            #expect(started.isRaised)
            _ = await task.value
            _ = await monitor.immediate { () async throws -> Int in throw Failure() }.result
            let cancelled = monitor.immediate { () async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 1
            }
            cancelled.cancel()
            _ = await cancelled.result
        }
        let counter = Counter()
        let seen = await counter.incrementImmediately(monitor, count: n)
        #expect(seen == Array(1...n), "each increment ran before immediate returned, on the actor")
        let snapshot = try await settle(monitor)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == UInt64(4 * n))
            #expect(snapshot.finished(.success) == UInt64(2 * n))
            #expect(snapshot.finished(.error) == UInt64(n))
            #expect(snapshot.finished(.cancelled) == UInt64(n))
            #expect(snapshot.live == 0)
        #endif
    }
}

enum TaskLocalProbe {
    @TaskLocal static var value = 0
}

extension Counter {
    /// `monitor.immediateDetached` from inside the actor: the operation inherits the actor's isolation
    /// and runs at once, before the call returns. Returns the value seen right after each call; every
    /// other call throws after its increment.
    func incrementImmediatelyDetached(_ monitor: TaskMonitor, count: Int) async -> [Int] {
        var seen: [Int] = []
        for index in 0..<count {
            if index.isMultiple(of: 2) {
                let task = monitor.immediateDetached {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
                await task.value
            } else {
                let task = monitor.immediateDetached { () async throws in
                    self.assertIsolated()
                    self.value += 1
                    throw Failure()
                }
                seen.append(value)
                _ = await task.result
            }
        }
        return seen
    }

    /// `TaskWatch.immediate` and `TaskWatch.immediateDetached` from inside the actor. Returns the value
    /// seen right after each call.
    func incrementThroughTaskWatch(count: Int) async -> [Int] {
        var seen: [Int] = []
        for _ in 0..<count {
            let attached = TaskWatch.immediate {
                self.assertIsolated()
                self.value += 1
            }
            seen.append(value)
            await attached.value
            let detached = TaskWatch.immediateDetached {
                self.assertIsolated()
                self.value += 1
            }
            seen.append(value)
            await detached.value
        }
        return seen
    }

    /// A nonisolated operation spawned from inside the actor: the wrapper is not the caller's, and the
    /// task still starts at once (on the caller's thread, off the actor). Returns whether each started.
    func startConcurrentOperations(_ monitor: TaskMonitor, count: Int) async -> [Bool] {
        var started: [Bool] = []
        for _ in 0..<count {
            let flag = Flag()
            let task = monitor.immediateDetached { @concurrent in flag.raise() }
            started.append(flag.isRaised)
            await task.value
        }
        return started
    }

    /// Every group helper from inside the actor: each child runs at once, isolated to the actor, before
    /// the add returns. Returns the value seen right after each add. The `ThrowingTaskGroup` children
    /// added by `addImmediateTask` throw after their increment.
    func addImmediateChildren(_ monitor: TaskMonitor, count: Int) async -> [Int] {
        var seen: [Int] = []
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<count {
                group.addImmediateTask(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
                group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
            }
        }
        await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<count {
                group.addImmediateTask(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                    throw Failure()
                }
                seen.append(value)
                group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
            }
            while !group.isEmpty { _ = try? await group.next() }
        }
        await withDiscardingTaskGroup { group in
            for _ in 0..<count {
                group.addImmediateTask(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
                group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
            }
        }
        try? await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<count {
                group.addImmediateTask(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
                group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    self.assertIsolated()
                    self.value += 1
                }
                seen.append(value)
            }
        }
        return seen
    }
}

extension ImmediateTests {
    @Test func immediateDetachedTasksStartSynchronouslyAndAreCounted() async throws {
        let monitor = uniqueMonitor("immediate_detached")
        let n = 20
        for _ in 0..<n {
            let started = Flag()
            let task = monitor.immediateDetached {
                started.raise()
                return 1
            }
            // No suspension in the operation: it ran to its end before `immediateDetached` returned.
            #expect(started.isRaised)
            _ = await task.value
            let threw = Flag()
            let failing = monitor.immediateDetached { () async throws -> Int in
                threw.raise()
                throw Failure()
            }
            #expect(threw.isRaised)
            _ = await failing.result
            let cancelled = monitor.immediateDetached { () async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 1
            }
            cancelled.cancel()
            _ = await cancelled.result
        }
        let counter = Counter()
        let seen = await counter.incrementImmediatelyDetached(monitor, count: n)
        #expect(seen == Array(1...n), "each increment ran before immediateDetached returned, on the actor")
        let started = await counter.startConcurrentOperations(monitor, count: n)
        #expect(started == Array(repeating: true, count: n), "a nonisolated operation started at once")
        // Isolated elsewhere than the caller: not immediate, but still run where it belongs and counted.
        let onMain = await monitor.immediateDetached { @MainActor in
            MainActor.assertIsolated()
            return true
        }.value
        #expect(onMain)
        let snapshot = try await settle(monitor)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == UInt64(5 * n + 1))
            #expect(snapshot.finished(.success) == UInt64(n + n / 2 + n + 1))
            #expect(snapshot.finished(.error) == UInt64(n + n / 2))
            #expect(snapshot.finished(.cancelled) == UInt64(n))
            #expect(snapshot.live == 0)
        #endif
    }

    @Test func immediateDetachedInheritsNoTaskLocals() async throws {
        let monitor = uniqueMonitor("immediate_locals")
        let (detached, attached) = TaskLocalProbe.$value.withValue(7) {
            (monitor.immediateDetached { TaskLocalProbe.value }, monitor.immediate { TaskLocalProbe.value })
        }
        #expect(await detached.value == 0)
        #expect(await attached.value == 7)
        let snapshot = try await settle(monitor)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == 2)
            #expect(snapshot.finished(.success) == 2)
        #endif
    }

    @Test func freeStandingImmediateSpawnsAreCountedByTheDefaultMonitor() async throws {
        // Other tests spawn through the default monitor too, concurrently: only lower bounds are exact.
        let before = TaskMonitor.default.snapshot()
        let n = 10
        for _ in 0..<n {
            let started = Flag()
            let attached = TaskWatch.immediate {
                started.raise()
                return 1
            }
            #expect(started.isRaised)
            _ = await attached.value
            _ = await TaskWatch.immediate { () async throws -> Int in throw Failure() }.result
            let detachedStarted = Flag()
            let detached = TaskWatch.immediateDetached {
                detachedStarted.raise()
                return 1
            }
            #expect(detachedStarted.isRaised)
            _ = await detached.value
            _ = await TaskWatch.immediateDetached { () async throws -> Int in throw Failure() }.result
        }
        let seen = await Counter().incrementThroughTaskWatch(count: n)
        #expect(seen == Array(1...2 * n), "each increment ran before the call returned, on the actor")
        // Each task counted its finish before its value was delivered.
        let after = TaskMonitor.default.snapshot()
        #expect(TaskMonitor.default.name == "default")
        #if !TASKWATCH_SILENT
            #expect(after.created - before.created >= UInt64(6 * n))
            #expect(after.finished(.success) - before.finished(.success) >= UInt64(4 * n))
            #expect(after.finished(.error) - before.finished(.error) >= UInt64(2 * n))
        #endif
    }

    @Test func groupChildrenAddedImmediatelyStartAtOnceAndAreCounted() async throws {
        let monitor = uniqueMonitor("immediate_groups")
        let n = 10
        let refusedRan = Flag()

        await withTaskGroup(of: Int.self) { group in
            for index in 0..<n {
                let started = Flag()
                group.addImmediateTask(monitor: monitor) {
                    started.raise()
                    return index
                }
                #expect(started.isRaised)
                let startedUnlessCancelled = Flag()
                let added = group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    startedUnlessCancelled.raise()
                    return index
                }
                #expect(added && startedUnlessCancelled.isRaised)
            }
            group.addImmediateTask(monitor: monitor) {
                try? await Task.sleep(for: .seconds(30))
                return -1
            }
            group.cancelAll()
            #expect(
                !group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    refusedRan.raise()
                    return 0
                })
            await group.waitForAll()
        }

        await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<n {
                let started = Flag()
                group.addImmediateTask(monitor: monitor) {
                    started.raise()
                    throw Failure()
                }
                #expect(started.isRaised)
                let startedUnlessCancelled = Flag()
                let added = group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    startedUnlessCancelled.raise()
                    return index
                }
                #expect(added && startedUnlessCancelled.isRaised)
            }
            group.addImmediateTask(monitor: monitor) {
                try await Task.sleep(for: .seconds(30))
                return -1
            }
            group.cancelAll()
            #expect(
                !group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                    refusedRan.raise()
                    return 0
                })
            // Collect every child, so that none is cancelled by the group's end.
            while !group.isEmpty { _ = try? await group.next() }
        }

        await withDiscardingTaskGroup { group in
            for _ in 0..<n {
                let started = Flag()
                group.addImmediateTask(monitor: monitor) { started.raise() }
                #expect(started.isRaised)
                let startedUnlessCancelled = Flag()
                let added = group.addImmediateTaskUnlessCancelled(monitor: monitor) { startedUnlessCancelled.raise() }
                #expect(added && startedUnlessCancelled.isRaised)
            }
            group.addImmediateTask(monitor: monitor) { try? await Task.sleep(for: .seconds(30)) }
            group.cancelAll()
            #expect(!group.addImmediateTaskUnlessCancelled(monitor: monitor) { refusedRan.raise() })
        }

        let thrown = await #expect(throws: Failure.self) {
            try await withThrowingDiscardingTaskGroup { group in
                for _ in 0..<n {
                    let started = Flag()
                    group.addImmediateTask(monitor: monitor) { started.raise() }
                    #expect(started.isRaised)
                    let startedUnlessCancelled = Flag()
                    let added = group.addImmediateTaskUnlessCancelled(monitor: monitor) {
                        startedUnlessCancelled.raise()
                    }
                    #expect(added && startedUnlessCancelled.isRaised)
                }
                group.addImmediateTask(monitor: monitor) { try await Task.sleep(for: .seconds(30)) }
                // A failing child cancels the group; cancelled explicitly too, so the refusal below does
                // not depend on when the group sees the failure.
                group.addImmediateTask(monitor: monitor) { throw Failure() }
                group.cancelAll()
                #expect(!group.addImmediateTaskUnlessCancelled(monitor: monitor) { refusedRan.raise() })
            }
        }
        #expect(thrown != nil)
        #expect(!refusedRan.isRaised, "a child refused by a cancelled group never ran")

        let counter = Counter()
        let seen = await counter.addImmediateChildren(monitor, count: n)
        #expect(seen == Array(1...8 * n), "each child ran before its add returned, on the actor")

        let snapshot = try await settle(monitor)
        #if TASKWATCH_SILENT
            #expect(snapshot.created == 0)
        #else
            // Nonisolated: 2n + 1 per group kind, one more (the failure) in the throwing discarding one.
            // On the actor: 8n, n of them failures. Refused children: none.
            #expect(snapshot.created == UInt64(8 * n + 5 + 8 * n))
            #expect(snapshot.finished(.success) == UInt64(7 * n + 7 * n))
            #expect(snapshot.finished(.error) == UInt64(n + 1 + n))
            #expect(snapshot.finished(.cancelled) == 4)
            #expect(snapshot.finished.reduce(0, +) == snapshot.created)
            #expect(snapshot.live == 0)
        #endif
    }
}
