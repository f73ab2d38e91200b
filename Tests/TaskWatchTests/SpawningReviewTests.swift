import Foundation
import Synchronization
import TaskWatchWire
import Testing

@testable import TaskWatch

// Findings of a review of Spawning/ and Monitors/, each pinned by a test that failed before its fix.
// `Flag`, `Failure`, `uniqueMonitor` and `settle` are in MonitorTests.swift and ImmediateTests.swift.

/// A serial executor that runs nothing until told: a job enqueued on it waits in `pending` until
/// `drain()` runs it on the calling thread. A task isolated to `GatedActor` can therefore only run
/// before `drain()` if something ran it without enqueueing it, which is what these tests look for,
/// with no timing involved.
final class GateExecutor: SerialExecutor {
    private let pending = Mutex<[UnownedJob]>([])

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pending.withLock { $0.append(job) }
    }

    /// Runs every job enqueued so far, and those they enqueue, on the calling thread.
    func drain() {
        while let job = pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }

    var waiting: Int { pending.withLock { $0.count } }
}

extension Flag {
    func raiseAndThrow() throws {
        raise()
        throw Failure()
    }
}

@globalActor actor GatedActor {
    static let shared = GatedActor()
    static let gate = GateExecutor()

    nonisolated var unownedExecutor: UnownedSerialExecutor { Self.gate.asUnownedSerialExecutor() }
}

@Suite(.serialized) struct SpawningReviewTests {
    /// `Task.immediate` starts at once only when the caller is on the operation's executor; otherwise
    /// it enqueues there. The groups' own `addImmediateTask` (6.3) starts the child on the calling
    /// thread whatever its isolation, so a child isolated to an actor that the caller is not on ran
    /// on that actor's behalf without holding it: concurrently with whatever the actor was running
    /// (seen with `@MainActor` and a global actor held by another job). The counted helpers wrapped
    /// the operation in a closure of the same isolation and so did the same. They must enqueue the
    /// child on its actor instead, as `Task.immediate` would, and still count it once.
    @Test func anImmediateGroupChildIsolatedToAnActorTheCallerIsNotOnWaitsForThatActor() async throws {
        let monitor = uniqueMonitor("immediate_elsewhere")
        let gate = GatedActor.gate
        var startedEarly: [String] = []
        /// Notes which of a group's two children ran before their adds returned, then lets them run.
        func check(_ group: String, _ flags: (Flag, Flag)) {
            if flags.0.isRaised { startedEarly.append("\(group).addImmediateTask") }
            if flags.1.isRaised { startedEarly.append("\(group).addImmediateTaskUnlessCancelled") }
            gate.drain()
        }

        await withTaskGroup(of: Int.self) { group in
            let flags = (Flag(), Flag())
            group.addImmediateTask(monitor: monitor) { @GatedActor in
                flags.0.raise()
                return 1
            }
            let added = group.addImmediateTaskUnlessCancelled(monitor: monitor) { @GatedActor in
                flags.1.raise()
                return 2
            }
            #expect(added)
            check("TaskGroup", flags)
            #expect(await group.reduce(0, +) == 3)
        }
        await withThrowingTaskGroup(of: Void.self) { group in
            let flags = (Flag(), Flag())
            group.addImmediateTask(monitor: monitor) { @GatedActor in
                flags.0.raise()
                throw Failure()
            }
            group.addImmediateTaskUnlessCancelled(monitor: monitor) { @GatedActor in flags.1.raise() }
            check("ThrowingTaskGroup", flags)
            while !group.isEmpty { _ = try? await group.next() }
        }
        await withDiscardingTaskGroup { group in
            let flags = (Flag(), Flag())
            group.addImmediateTask(monitor: monitor) { @GatedActor in flags.0.raise() }
            group.addImmediateTaskUnlessCancelled(monitor: monitor) { @GatedActor in flags.1.raise() }
            check("DiscardingTaskGroup", flags)
        }
        let thrown = await #expect(throws: Failure.self) {
            try await withThrowingDiscardingTaskGroup { group in
                let flags = (Flag(), Flag())
                group.addImmediateTaskUnlessCancelled(monitor: monitor) { @GatedActor in flags.1.raise() }
                group.addImmediateTask(monitor: monitor) { @GatedActor in try flags.0.raiseAndThrow() }
                check("ThrowingDiscardingTaskGroup", flags)
            }
        }
        #expect(thrown != nil)

        // `Task.immediate` from here, for comparison: enqueued on the actor, as the children must be.
        let ran = Flag()
        let task = monitor.immediate { @GatedActor in ran.raise() }
        if ran.isRaised { startedEarly.append("TaskMonitor.immediate") }
        gate.drain()
        await task.value

        #expect(startedEarly.isEmpty, "ran off their actor, before the add returned: \(startedEarly)")
        #expect(gate.waiting == 0)
        let snapshot = try await settle(monitor)
        #expect(snapshot.live == 0)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == 9)
            #expect(snapshot.finished(.success) == 7)
            #expect(snapshot.finished(.error) == 2)
        #endif
    }

    /// The other side of the same decision: a child isolated to the actor the caller is on still starts
    /// at once, on the main actor and on an actor with a custom executor.
    @MainActor @Test func anImmediateGroupChildOnTheCallersActorStillStartsAtOnce() async throws {
        let monitor = uniqueMonitor("immediate_here")
        let onMain = Flag()
        await withDiscardingTaskGroup { group in
            group.addImmediateTask(monitor: monitor) { @MainActor in onMain.raise() }
            #expect(onMain.isRaised, "a @MainActor child added on the main actor started at once")
        }

        let done = Flag()
        let onGate = Task { @GatedActor () -> Bool in
            defer { done.raise() }
            let started = Flag()
            await withTaskGroup(of: Void.self) { group in
                group.addImmediateTask(monitor: monitor) { @GatedActor in started.raise() }
            }
            return started.isRaised
        }
        // The gate runs jobs only here: drain it until the task is done.
        while !done.isRaised {
            GatedActor.gate.drain()
            await Task.yield()
        }
        GatedActor.gate.drain()
        #expect(await onGate.value, "a child added on its own (custom-executor) actor started at once")
        let snapshot = try await settle(monitor)
        #expect(snapshot.live == 0)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == 2)
            #expect(snapshot.finished(.success) == 2)
        #endif
    }

    /// Swift compares canonically equivalent strings as equal, so `café` written with a precomposed é
    /// and with e and a combining acute accent name one monitor, whose series carry the first spelling
    /// as their `task` label. A handle made with the second spelling kept that spelling as its `name`,
    /// documented as the label's value: a query built from it (Prometheus compares bytes) matched none
    /// of the series it counts in.
    @Test func aMonitorsNameIsTheTaskLabelItsSeriesCarry() throws {
        let suffix = UUID().uuidString.prefix(8)
        let composed = TaskMonitor("caf\u{E9}_\(suffix)")
        let decomposed = TaskMonitor("cafe\u{301}_\(suffix)")
        let label = try #require(
            SeriesTable.shared.liveDeclarations.lazy.filter { $0.name == "swift_tasks" }.flatMap(\.labels)
                .first { $0.name == "task" && $0.value == composed.name })
        #expect(Array(composed.name.utf8) == Array(label.value.utf8))
        #expect(Array(decomposed.name.utf8) == Array(label.value.utf8), "the name is the label's value, byte for byte")
    }
}
