import Foundation
import Synchronization
import TaskWatchWire
import Testing

@testable import TaskWatch

struct Failure: Error {}

actor Counter {
    var value = 0

    /// Spawns from inside the actor: the operation must run isolated to it.
    func spawnIncrements(_ monitor: TaskMonitor, count: Int) async {
        for _ in 0..<count {
            await monitor.task {
                self.assertIsolated()
                self.value += 1
            }.value
        }
    }
}

extension Counter {
    /// Spawns from inside the actor, each body under a ticket: both must run isolated to it.
    func runUnderTickets(_ monitor: TaskMonitor, count: Int) async {
        for _ in 0..<count {
            let ticket = monitor.ticket()
            await Task {
                await ticket.run {
                    self.assertIsolated()
                    self.value += 1
                }
            }.value
        }
    }
}

/// An actor the spawning tests are not isolated to.
@globalActor actor OrderActor {
    static let shared = OrderActor()
}

/// The order in which jobs ran on `OrderActor`.
final class RunOrder: Sendable {
    private let order = Mutex<[Int]>([])
    @OrderActor func ran(_ index: Int) { order.withLock { $0.append(index) } }
    var values: [Int] { order.withLock { $0 } }
}

/// Waits until the monitor has no live task, or 20 seconds pass.
func settle(_ monitor: TaskMonitor) async throws -> TaskMonitor.Snapshot {
    let deadline = ContinuousClock.now + .seconds(20)
    var snapshot = monitor.snapshot()
    while snapshot.live != 0 && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(5))
        snapshot = monitor.snapshot()
    }
    return snapshot
}

func uniqueMonitor(_ label: String) -> TaskMonitor {
    TaskMonitor("\(label)_\(UUID().uuidString.prefix(8))")
}

@Suite struct MonitorTests {
    @Test func everyKindOfTaskIsCountedOnceWithItsOutcome() async throws {
        try await ProcessWide.exclusive {
            let monitor = uniqueMonitor("kinds")
            let n = 50
            for _ in 0..<n {
                _ = await monitor.task { 1 }.value
                _ = await monitor.task { () async throws -> Int in throw Failure() }.result
                _ = await monitor.task { () async throws -> Int in throw CancellationError() }.result
                let cancelled = monitor.task { () async -> Bool in
                    try? await Task.sleep(for: .seconds(30))
                    return Task.isCancelled
                }
                cancelled.cancel()
                _ = await cancelled.value
                _ = await monitor.detached { 2 }.value
                _ = await monitor.detached { () async throws -> Int in throw Failure() }.result
            }
            await withTaskGroup(of: Int.self) { group in
                for _ in 0..<n { group.addTask(monitor: monitor) { 3 } }
                await group.waitForAll()
            }
            await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<n { group.addTask(monitor: monitor) { throw Failure() } }
                // Collect every child, so none is cancelled by the group's end before it throws.
                while !group.isEmpty { _ = try? await group.next() }
            }
            await withDiscardingTaskGroup { group in
                for _ in 0..<n { group.addTask(monitor: monitor) {} }
            }
            try await withThrowingDiscardingTaskGroup { group in
                for _ in 0..<n { group.addTask(monitor: monitor) {} }
            }
            let snapshot = try await settle(monitor)
            #if TASKWATCH_SILENT
                #expect(snapshot.created == 0)
            #else
                #expect(snapshot.created == UInt64(10 * n))
                #expect(snapshot.finished(.success) == UInt64(5 * n))
                #expect(snapshot.finished(.error) == UInt64(3 * n))
                #expect(snapshot.finished(.cancelled) == UInt64(2 * n))
                #expect(snapshot.finished.reduce(0, +) == snapshot.created)
                #expect(snapshot.live == 0)
                #if TASKWATCH_STRESS
                    #expect(snapshot.durationBuckets.reduce(0, +) == snapshot.created)
                #else
                    #expect(snapshot.durationBuckets.reduce(0, +) <= snapshot.created)
                #endif
            #endif
        }
    }

    @Test func ticketsCountEveryKindOfTaskOnceWithItsOutcome() async throws {
        try await ProcessWide.exclusive {
            let monitor = uniqueMonitor("tickets")
            let n = 50
            for _ in 0..<n {
                let success = monitor.ticket()
                _ = await Task { await success.run { 1 } }.value
                let failure = monitor.ticket()
                _ = await Task { () async throws -> Int in
                    try await failure.run { () throws(Failure) -> Int in throw Failure() }
                }
                .result
                let thrownCancellation = monitor.ticket()
                _ = await Task.detached {
                    try await thrownCancellation.run { () throws -> Int in throw CancellationError() }
                }
                .result
                let cancelled = monitor.ticket()
                let sleeper = Task { await cancelled.run { try? await Task.sleep(for: .seconds(30)) } }
                sleeper.cancel()
                await sleeper.value
            }
            await withDiscardingTaskGroup { group in
                for _ in 0..<n {
                    let child = monitor.ticket()
                    group.addTask { await child.run {} }
                }
            }
            let snapshot = try await settle(monitor)
            #if TASKWATCH_SILENT
                #expect(snapshot.created == 0)
            #else
                #expect(snapshot.created == UInt64(5 * n))
                #expect(snapshot.finished(.success) == UInt64(2 * n))
                #expect(snapshot.finished(.error) == UInt64(n))
                #expect(snapshot.finished(.cancelled) == UInt64(2 * n))
                #expect(snapshot.live == 0)
            #endif
        }
    }

    @Test func aTicketCountsFromCreationNotFromTheFirstRun() async throws {
        let monitor = uniqueMonitor("ticket_live")
        let ticket = monitor.ticket()
        // Taken but not yet run: a task waiting for a thread is live.
        #if !TASKWATCH_SILENT
            #expect(monitor.snapshot().live == 1)
        #endif
        await ticket.run {}
        let snapshot = try await settle(monitor)
        #expect(snapshot.live == 0)
    }

    @Test func ticketsRunInTheCallersIsolation() async throws {
        let counter = Counter()
        await counter.runUnderTickets(uniqueMonitor("ticket_isolation"), count: 100)
        #expect(await counter.value == 100)
    }

    @Test func groupChildrenAddedUnlessCancelledAreCountedOnlyWhenAdded() async throws {
        let monitor = uniqueMonitor("unless")
        await withTaskGroup(of: Void.self) { group in
            #expect(group.addTaskUnlessCancelled(monitor: monitor) {})
            group.cancelAll()
            #expect(!group.addTaskUnlessCancelled(monitor: monitor) {})
        }
        let snapshot = try await settle(monitor)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == 1)
            #expect(snapshot.live == 0)
        #endif
    }

    @Test func liveCountsRunningTasks() async throws {
        let monitor = uniqueMonitor("live")
        let tasks = (0..<20).map { _ in monitor.task { try? await Task.sleep(for: .seconds(30)) } }
        #if !TASKWATCH_SILENT
            #expect(monitor.snapshot().live == 20)
        #endif
        for task in tasks { task.cancel() }
        let snapshot = try await settle(monitor)
        #expect(snapshot.live == 0)
        #if !TASKWATCH_SILENT
            #expect(snapshot.finished(.cancelled) == 20)
        #endif
    }

    @Test func operationsKeepTheCallersIsolation() async throws {
        let monitor = uniqueMonitor("isolation")
        let counter = Counter()
        await counter.spawnIncrements(monitor, count: 100)
        #expect(await counter.value == 100)
        let onMain = await monitor.task { @MainActor in
            MainActor.assertIsolated()
            return true
        }.value
        #expect(onMain)
    }

    /// A plain `Task { @OrderActor in }` is enqueued on its actor at once, so two of them run in spawn
    /// order. A nonisolated wrapper started the monitored one on the global executor and hopped, and
    /// the plain one spawned after it overtook it (991 of 1,000 rounds): the wrapper now takes the
    /// operation's actor.
    @Test func operationsIsolatedToAnotherActorKeepTheirOrder() async throws {
        let monitor = uniqueMonitor("order")
        let rounds = 200
        var overtaken = [String: Int]()
        for _ in 0..<rounds {
            let task = RunOrder()
            let first = monitor.task { @OrderActor in task.ran(1) }
            let second = Task { @OrderActor in task.ran(2) }
            _ = await (first.value, second.value)
            if task.values != [1, 2] { overtaken["task", default: 0] += 1 }

            let throwing = RunOrder()
            let third = monitor.task { @OrderActor () throws in throwing.ran(1) }
            let fourth = Task { @OrderActor in throwing.ran(2) }
            _ = await (third.result, fourth.value)
            if throwing.values != [1, 2] { overtaken["throwing task", default: 0] += 1 }

            let detached = RunOrder()
            let fifth = monitor.detached { @OrderActor in detached.ran(1) }
            let sixth = Task.detached { @OrderActor in detached.ran(2) }
            _ = await (fifth.value, sixth.value)
            if detached.values != [1, 2] { overtaken["detached", default: 0] += 1 }

            let children = RunOrder()
            await withTaskGroup(of: Void.self) { group in
                group.addTask(monitor: monitor) { @OrderActor in children.ran(1) }
                group.addTask { @OrderActor in children.ran(2) }
            }
            if children.values != [1, 2] { overtaken["group child", default: 0] += 1 }
        }
        #expect(overtaken.isEmpty, "monitored tasks overtaken by plain ones spawned after them: \(overtaken)")
        let snapshot = try await settle(monitor)
        #expect(snapshot.live == 0)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == UInt64(4 * rounds))
            #expect(snapshot.finished(.success) == UInt64(4 * rounds))
        #endif
    }

    @Test func defaultMonitorAndFreeStandingSpawns() async throws {
        let before = TaskMonitor.default.snapshot().created
        _ = await TaskWatch.task { 1 }.value
        _ = await TaskWatch.detached { 1 }.value
        _ = await TaskWatch.task { () async throws -> Int in 1 }.result
        _ = await TaskWatch.detached { () async throws -> Int in 1 }.result
        let ticket = TaskWatch.ticket()
        _ = await Task { await ticket.run { 1 } }.value
        #expect(TaskMonitor.default.name == "default")
        #if !TASKWATCH_SILENT
            #expect(TaskMonitor.default.snapshot().created - before >= 5)
        #endif
    }

    @Test func monitorsWithTheSameNameShareCounters() async throws {
        let name = "shared_\(UUID().uuidString.prefix(8))"
        _ = await TaskMonitor(name).task { 1 }.value
        _ = await TaskMonitor(name).task { 1 }.value
        #if !TASKWATCH_SILENT
            #expect(TaskMonitor(name).snapshot().created == 2)
        #endif
    }

    /// A name over the protocol's 4,096 bytes is cut at a character boundary, as the process name and
    /// swift-metrics label values are: the monitor's series were refused whole (counted in
    /// `seriesDropped`) while it counted in-process.
    @Test func aLongNameIsCutAtACharacterBoundaryAndItsSeriesAreDeclared() async throws {
        // 15 bytes of ASCII, then 2-byte characters: a cut at 4,096 bytes would fall inside one.
        let long = "long_\(UUID().uuidString.prefix(8))_x" + String(repeating: "é", count: 3_000)
        let monitor = TaskMonitor(long)
        #expect(monitor.name.utf8.count == 4_095)
        #expect(long.hasPrefix(monitor.name))
        #expect(MonitorRegistry.shared.entries().last { $0.name == monitor.name }?.series != nil)
        let declared = SeriesTable.shared.liveDeclarations.filter { $0.labels.contains(Label("task", monitor.name)) }
        #expect(declared.count == 6)
        // Names that are the same once cut are one monitor.
        _ = await TaskMonitor(long + "more").task { 1 }.value
        #if !TASKWATCH_SILENT
            #expect(monitor.snapshot().created == 1)
        #endif
    }

    /// An empty name is `unnamed`: Prometheus takes `task=""` for no label at all.
    @Test func anEmptyNameIsUnnamed() async throws {
        let monitor = TaskMonitor("")
        #expect(monitor.name == "unnamed")
        #expect(TaskMonitor.unnamed == "unnamed")
        let declared = SeriesTable.shared.liveDeclarations.filter { $0.name == "swift_tasks" }
        #expect(declared.contains { $0.labels == [Label("task", "unnamed")] })
        #expect(!declared.contains { $0.labels == [Label("task", "")] })
        let before = TaskMonitor("unnamed").snapshot().created
        _ = await monitor.task { 1 }.value
        #if !TASKWATCH_SILENT
            #expect(TaskMonitor("unnamed").snapshot().created == before + 1)
        #endif
    }

    @Test(.timeLimit(.minutes(1))) func eightConcurrentSpawnersLoseNoCount() async throws {
        try await ProcessWide.exclusive {
            let monitor = uniqueMonitor("concurrent")
            let spawners = 8
            let perSpawner = 125_000
            let clock = ContinuousClock()
            let elapsed = await clock.measure {
                await withDiscardingTaskGroup { group in
                    for _ in 0..<spawners {
                        group.addTask {
                            for _ in 0..<perSpawner { monitor.detached {} }
                        }
                    }
                }
            }
            let snapshot = try await settle(monitor)
            print("spawned \(spawners * perSpawner) tasks in \(elapsed)")
            #if !TASKWATCH_SILENT
                #expect(snapshot.created == UInt64(spawners * perSpawner))
                #expect(snapshot.finished(.success) == UInt64(spawners * perSpawner))
                #expect(snapshot.live == 0)
            #endif
        }
    }
}

@Suite struct ConfigurationTests {
    @Test func environmentDrivesTheConfiguration() {
        let configuration = Configuration(environment: [
            "TASKWATCH_SOCKET": "/tmp/x.sock", "TASKWATCH_PROCESS": "api", "TASKWATCH_INTERVAL": "250ms",
            "TASKWATCH_DISABLED": "1",
        ])
        #expect(configuration.socketPath == "/tmp/x.sock")
        #expect(configuration.processName == "api")
        #expect(configuration.interval == .milliseconds(250))
        #expect(configuration.isDisabled)
        #expect(!TaskWatch.start(configuration))
    }

    @Test func defaultsComeFromTheProfile() {
        let configuration = Configuration(environment: ["XDG_RUNTIME_DIR": "/run/user/1000"])
        #expect(configuration.interval == Profile.reportInterval)
        #expect(!configuration.isDisabled)
        #expect(!configuration.processName.isEmpty)
        if getuid() != 0 { #expect(configuration.socketPath == "/run/user/1000/taskwatch/ingest.sock") }
        #if TASKWATCH_STRESS
            #expect(Profile.reportInterval == .milliseconds(1))
            #expect(Profile.probeInterval == .milliseconds(10))
        #else
            #expect(Profile.reportInterval == .milliseconds(10))
            #expect(Profile.probeInterval == .milliseconds(100))
        #endif
    }

    @Test(arguments: [
        ("10ms", Duration.milliseconds(10)), ("1s", .seconds(1)), ("500us", .microseconds(500)),
        ("250µs", .microseconds(250)), ("100ns", .nanoseconds(100)), ("2m", .seconds(120)), ("1h", .seconds(3_600)),
        ("25", .milliseconds(25)), ("1.5s", .milliseconds(1500)), ("0.25ms", .microseconds(250)),
        (" 10ms\t", .milliseconds(10)), ("\n7s ", .seconds(7)), ("007ms", .milliseconds(7)),
    ])
    func durationsParse(text: String, expected: Duration) {
        #expect(Environment.readDuration(text) == .valid(expected))
        #expect(Environment.parseDuration(text) == expected)
    }

    /// Each of these fell back to the default silently, or was read as something else (`0x10` as 16 ms).
    @Test(arguments: [
        "", " ", "fast", "-1s", "+5ms", "ms", "10MS", "1H", "10 ms", "1,5ms", "1.", ".5s", "1.2.3s", "nan", "inf",
        "infms", "1e9s", "1e3", "0x10", "5d", "10ms5", "1ms1s", "١٠ms",
    ])
    func badDurationsAreRefused(text: String) {
        #expect(Environment.readDuration(text) == .malformed)
        #expect(Environment.parseDuration(text) == nil)
    }

    /// Out of range, a well-formed duration is clamped to the range, as one set in code is.
    @Test(arguments: [
        ("0.5ns", Configuration.durationRange.lowerBound), ("0", Configuration.durationRange.lowerBound),
        ("0ms", Configuration.durationRange.lowerBound), ("0.0000000001s", .nanoseconds(1)),
        ("999999999999", Configuration.durationRange.upperBound),
        ("1000000000000000ns", Configuration.durationRange.upperBound),
        (String(repeating: "9", count: 400) + "h", Configuration.durationRange.upperBound),
    ])
    func outOfRangeDurationsAreClamped(text: String, expected: Duration) {
        guard case .clamped(let duration, _) = Environment.readDuration(text) else {
            Issue.record("\(text) was not clamped")
            return
        }
        #expect(duration == expected)
    }

    /// `TaskWatch.start()` says once, on one line each, which value it ignored and what it uses instead.
    @Test func ignoredValuesAreSaidWithWhatIsUsedInstead() {
        let malformed = Configuration(environment: ["TASKWATCH_INTERVAL": "10MS", "TASKWATCH_DISABLED": "maybe"])
        #expect(malformed.interval == Profile.reportInterval)
        #expect(!malformed.isDisabled)
        let interval = Environment.format(Profile.reportInterval)
        #expect(
            malformed.noticeLines == [
                "TaskWatch: TASKWATCH_INTERVAL=\"10MS\" is not a duration (a number and ns, us, ms, s, m or h, "
                    + "e.g. 10ms); using \(interval)",
                "TaskWatch: TASKWATCH_DISABLED=\"maybe\" is not one of 1, true, yes, on, 0, false, no, off; "
                    + "instrumentation stays on",
            ])
        let clamped = Configuration(environment: ["TASKWATCH_INTERVAL": "999999999999"])
        #expect(clamped.interval == Configuration.durationRange.upperBound)
        #expect(
            clamped.noticeLines == [
                "TaskWatch: TASKWATCH_INTERVAL=\"999999999999\" is above the longest interval, 999999999999999ns; "
                    + "using 999999999999999ns"
            ])
        // Zero asks for no interval, not the shortest: the profile's is used (it made a 100 µs reporter
        // and said "using 1ns"). Below the reporter's floor, the floor is used and said.
        for zero in ["0", "0ms", "0.0s", " 0 "] {
            let configuration = Configuration(environment: ["TASKWATCH_INTERVAL": zero])
            #expect(configuration.interval == Profile.reportInterval)
            #expect(
                configuration.noticeLines == ["TaskWatch: TASKWATCH_INTERVAL=\"\(zero)\" is zero; using \(interval)"])
        }
        let tiny = Configuration(environment: ["TASKWATCH_INTERVAL": "5us"])
        #expect(tiny.interval == .microseconds(100))
        #expect(
            tiny.noticeLines == [
                "TaskWatch: TASKWATCH_INTERVAL=\"5us\" is below the shortest report interval, 100us; using 100us"
            ])
        // TASKWATCH_PROCESS and TASKWATCH_SOCKET are read the same way: trimmed, empty as unset.
        let spaced = Configuration(environment: ["TASKWATCH_PROCESS": " api\t", "TASKWATCH_SOCKET": " /tmp/x.sock "])
        #expect(spaced.processName == "api")
        #expect(spaced.socketPath == "/tmp/x.sock")
        #expect(Configuration(environment: ["TASKWATCH_PROCESS": "  "]).processName == Configuration.executableName())
        // A value with a line break stays on one line; a long one is cut.
        let escaped = Configuration(environment: ["TASKWATCH_INTERVAL": "1\n" + String(repeating: "x", count: 100)])
        #expect(escaped.noticeLines.count == 1)
        #expect(escaped.noticeLines.allSatisfy { !$0.contains("\n") && $0.count < 250 })
        // Valid, empty or absent values say nothing.
        for environment in [
            [:], ["TASKWATCH_INTERVAL": "", "TASKWATCH_DISABLED": ""],
            ["TASKWATCH_INTERVAL": " 2s ", "TASKWATCH_DISABLED": "off"],
        ] {
            #expect(Configuration(environment: environment).noticeLines.isEmpty)
        }
    }

    /// Set in code, durations are held to the range the environment accepts: a negative one under a
    /// second used to trap in `start()`, and a huge one to overflow the reporter's deadlines.
    @Test func durationsSetInCodeAreClamped() {
        let range = Configuration.durationRange
        #expect(range == .nanoseconds(1) ... .nanoseconds(999_999_999_999_999))
        var configuration = Configuration(environment: [:])
        for (duration, expected) in [
            (Duration.nanoseconds(-500_000_000), range.lowerBound), (.zero, range.lowerBound),
            (.seconds(-5), range.lowerBound), (.seconds(Int64.max), range.upperBound),
            (.seconds(Int64.min), range.lowerBound), (.milliseconds(250), .milliseconds(250)),
        ] {
            configuration.interval = duration
            configuration.probeInterval = duration
            #expect(configuration.interval == expected)
            #expect(configuration.probeInterval == expected)
            _ = Reporter(configuration: configuration)
        }
        #expect(Duration.nanoseconds(-500_000_000).nanoseconds == 1)
        #expect(Duration.seconds(Int64.max).nanoseconds == 999_999_999_999_999)
        #expect(Duration.milliseconds(3).nanoseconds == 3_000_000)
        // The environment's bounds are the same.
        #expect(Environment.readDuration("1ns") == .valid(range.lowerBound))
        #expect(Environment.readDuration("999999999999999ns") == .valid(range.upperBound))
        #expect(Environment.parseDuration("1000000000000000ns") == range.upperBound)
    }

    /// Read as `TASKWATCH_INTERVAL` is: surrounding whitespace ignored (`" 1"` did not disable, while the
    /// interval was trimmed), any case.
    @Test func disabledValues() {
        for value in ["1", "true", "yes", "on", "TRUE", "Yes", " 1", "1\n", "\ttrue "] {
            #expect(Environment.isDisabled(["TASKWATCH_DISABLED": value]), "\(value.debugDescription)")
            #expect(Environment.disabledSetting(["TASKWATCH_DISABLED": value]).notice == nil)
        }
        for value in ["0", "false", "no", "off", "", " ", "OFF"] {
            #expect(!Environment.isDisabled(["TASKWATCH_DISABLED": value]), "\(value.debugDescription)")
            #expect(Environment.disabledSetting(["TASKWATCH_DISABLED": value]).notice == nil)
        }
        for value in ["2", "y", "disabled", "1 1"] {
            #expect(!Environment.isDisabled(["TASKWATCH_DISABLED": value]), "\(value.debugDescription)")
            #expect(Environment.disabledSetting(["TASKWATCH_DISABLED": value]).notice != nil)
        }
        #expect(!Environment.isDisabled([:]))
    }
}

@Suite struct SeriesTableTests {
    @Test func theCapRefusesAndCountsSeries() {
        let table = SeriesTable(limit: 3)
        let one = SeriesDescriptor(name: "a", help: "", type: .counter)
        let first = table.declare(all: [one, one])
        #expect(first?.count == 2)
        #expect(table.declare(all: [one, one]) == nil)
        #expect(table.dropped == 2)
        table.retire(first![0])
        // The retired series declared again gets its id back, at the end; the second, a new id.
        #expect(table.declare(all: [one, one])?.map(\.rawValue) == [1, 3])
        #expect(table.liveCount == 3)
        let reader = ObjectIdentifier(table)
        #expect(table.startOver(for: reader).map(\.id) == [2, 1, 3])
        #expect(table.takeChanges(for: reader) == [])
    }

    @Test func changesComeInTheOrderTheyHappened() throws {
        let table = SeriesTable(limit: 10)
        let jobs = SeriesDescriptor(name: "jobs", help: "Jobs.", type: .gauge, labels: [Label("queue", "a")])
        let other = SeriesDescriptor(name: "jobs", help: "Jobs.", type: .gauge, labels: [Label("queue", "b")])
        // Nothing is kept for a reporter that has not started over yet.
        let reader = ObjectIdentifier(table)
        let id = try #require(table.declare(all: [jobs])?.first)
        #expect(table.takeChanges(for: reader) == nil)
        #expect(table.footprint.changes == 0)
        #expect(table.startOver(for: reader).map(\.id) == [id.rawValue])
        table.retire(id)
        let otherID = try #require(table.declare(all: [other])?.first)
        #expect(otherID != id)
        #expect(table.declare(all: [jobs])?.first == id)
        let declared = table.liveDeclarations
        #expect(
            table.takeChanges(for: reader) == [
                .retire(id.rawValue), .declare(declared[0]), .declare(declared[1]),
            ])
        #expect(declared.map(\.id) == [otherID.rawValue, id.rawValue])
        #expect(table.takeChanges(for: reader) == [])
        #expect(table.footprint.changes == 0)
        #expect(table.liveCount == 2)
    }

    @Test func retiredPlacesAreReclaimedAndTheOrderKept() throws {
        let table = SeriesTable(limit: 1_000)
        let descriptors = (0..<300).map {
            SeriesDescriptor(name: "items", help: "", type: .gauge, labels: [Label("item", "\($0)")])
        }
        let ids = try #require(table.declare(all: descriptors))
        // Retire all but every tenth: the holes are dropped along the way.
        for (index, id) in ids.enumerated() where index % 10 != 0 { table.retire(id) }
        #expect(table.liveDeclarations.map(\.id) == stride(from: 0, to: 300, by: 10).map { ids[$0].rawValue })
        // The survivors can still be retired, and retired twice changes nothing.
        table.retire(ids[0])
        table.retire(ids[0])
        #expect(table.liveCount == 29)
        #expect(table.liveDeclarations.first?.id == ids[10].rawValue)
    }

    /// A process that keeps making and retiring series (a label per request) keeps a bounded table, and
    /// its reporter's pending changes stay what it has not taken yet.
    @Test func seriesThatComeAndGoLeaveABoundedTable() throws {
        let table = SeriesTable(limit: 50)
        let reader = ObjectIdentifier(table)
        _ = table.startOver(for: reader)
        for round in 0..<20_000 {
            let descriptor = SeriesDescriptor(
                name: "request_bytes", help: "", type: .gauge, labels: [Label("request", "\(round)")])
            let id = try #require(table.declare(all: [descriptor])?.first)
            table.retire(id)
            if round % 100 == 0 { _ = table.takeChanges(for: reader) }
        }
        #expect(table.liveCount == 0)
        #expect(table.footprint.declarations <= 64)
        #expect(table.footprint.retired <= 50)
        #expect(table.takeChanges(for: reader)?.count ?? .max <= 200)
    }

    /// Each reporter reads the changes at its own position; one that stops taking them (its daemon does
    /// not read) costs a bounded backlog, then starts over.
    @Test func everyReporterGetsEveryChangeAndAStalledOneStartsOver() throws {
        let table = SeriesTable(limit: 10)
        let first = ObjectIdentifier(table)
        let second = ObjectIdentifier(SeriesTable.shared)
        let descriptor = { (index: Int) in
            SeriesDescriptor(name: "items", help: "", type: .gauge, labels: [Label("item", "\(index)")])
        }
        _ = table.startOver(for: first)
        let a = try #require(table.declare(all: [descriptor(0)])?.first)
        _ = table.startOver(for: second)
        table.retire(a)
        #expect(table.takeChanges(for: first)?.count == 2)
        #expect(table.takeChanges(for: second) == [.retire(a.rawValue)])
        #expect(table.footprint.changes == 0)
        // The second stops taking changes; the first goes on.
        for round in 0..<(3 * table.maxBacklog) {
            let id = try #require(table.declare(all: [descriptor(round)])?.first)
            table.retire(id)
            if round % 10 == 0 { _ = table.takeChanges(for: first) }
        }
        #expect(table.footprint.changes <= 2 * table.maxBacklog)
        #expect(table.takeChanges(for: first) != nil)
        #expect(table.takeChanges(for: second) == nil, "too far behind: it must start over")
        // Starting over from every live declaration puts it back in step.
        #expect(table.startOver(for: second).isEmpty)
        #expect(table.takeChanges(for: second) == [])
        table.forget(first)
        table.forget(second)
        #expect(table.footprint.changes == 0)
    }

    /// After 2^32 declarations the id counter wraps: it must not hand out 0, nor an id still live (a
    /// built-in's, say), whose later retirement would take the other series off the daemon.
    @Test func wrappedIdsSkipZeroAndEveryLiveID() throws {
        let table = SeriesTable(limit: 10)
        let series = { (name: String) in SeriesDescriptor(name: name, help: "", type: .gauge) }
        let low = try #require(table.declare(all: [series("a"), series("b"), series("c")]))
        #expect(low.map(\.rawValue) == [1, 2, 3])
        table.moveNextID(to: UInt32.max - 1)
        let wrapped = try #require(table.declare(all: [series("d"), series("e"), series("f")]))
        #expect(wrapped.map(\.rawValue) == [UInt32.max - 1, UInt32.max, 4])
        // A retired id goes to a new series once the counter comes round to it again...
        table.retire(low[0])
        table.moveNextID(to: UInt32.max)
        #expect(table.declare(all: [series("g")])?.map(\.rawValue) == [1])
        // ...and then not back to the series it had: that one gets a free id.
        #expect(table.declare(all: [series("a")])?.map(\.rawValue) == [5])
        let ids = table.liveDeclarations.map(\.id)
        #expect(Set(ids).count == ids.count)
        #expect(!ids.contains(0))
    }

    @Test func changesBecomeDeclareAndRetireFramesInOrder() throws {
        let declaration = { (id: UInt32) in SeriesDeclaration(id: id, type: .gauge, name: "g", help: "") }
        let frames = Reporter.frames(for: [
            .declare(declaration(1)), .declare(declaration(2)), .retire(1), .retire(2), .declare(declaration(1)),
        ])
        #expect(
            try frames.map { try FrameDecoder.decode($0) } == [
                .declare([declaration(1), declaration(2)]), .retire([1, 2]), .declare([declaration(1)]),
            ])
    }

    /// A monitor made while the cap left no room had no series for good, though its tasks were counted.
    /// Now it is tried again once a series is retired, without counting the refusal twice.
    @Test func aMonitorMadeAtTheCapGetsItsSeriesOnceRoomIsFreed() throws {
        let table = SeriesTable(limit: 20)
        let registry = MonitorRegistry(table: table)
        var fillers: [SeriesID] = []
        while let id = table.declare(all: [
            SeriesDescriptor(name: "filler", help: "", type: .gauge, labels: [Label("n", "\(fillers.count)")])
        ])?.first {
            fillers.append(id)
        }
        #expect(fillers.count == 20)
        _ = registry.counters(for: "late")
        #expect(registry.entries().map(\.name) == ["late"])
        #expect(registry.entries().first?.series == nil)
        let dropped = table.dropped
        #expect(dropped == 1 + 6, "the filler that did not fit, and the monitor's six series")

        // Not enough room yet (a monitor takes 7 places), and nothing retired since: no new attempt.
        for id in fillers.prefix(6) { table.retire(id) }
        #expect(registry.entries().first?.series == nil)
        #expect(registry.entries().first?.series == nil)
        table.retire(fillers[6])
        let series = try #require(registry.entries().first?.series, "tried again after a retirement")
        #expect(table.liveDeclarations.contains { $0.id == series.live.rawValue && $0.name == "swift_tasks" })
        #expect(table.liveCount == 20)
        #expect(table.dropped == dropped, "a retry is not counted again")
    }

    @Test func reservedRoomStaysFreeForTheBuiltins() {
        let table = SeriesTable(limit: 4, reserved: 2)
        let one = SeriesDescriptor(name: "a", help: "", type: .gauge)
        #expect(table.declare(all: [one, one])?.count == 2)
        #expect(table.declare(all: [one]) == nil, "the last two places are kept")
        #expect(table.declare(all: [one, one], priority: .builtin)?.count == 2)
        #expect(table.liveCount == 4)
        #expect(table.dropped == 1)
        // The process-wide table keeps room for every built-in.
        #expect(BuiltinSeries.count == 6)
    }

    /// App series (swift-metrics, `TaskWatch.declare`) that reach the cap leave room for task monitors,
    /// so a metric with a label per user cannot take the series this library exists for.
    @Test func appSeriesAtTheCapLeaveRoomForTaskMonitors() {
        let table = SeriesTable(limit: 20, reserved: 2, monitorHeadroom: 7)
        let one = SeriesDescriptor(name: "a", help: "", type: .gauge)
        let counter = SeriesDescriptor(name: "c", help: "", type: .counter)
        var appSeries = 0
        while table.declare(all: [one]) != nil { appSeries += 1 }
        #expect(appSeries == 20 - 2 - 7)
        // A monitor: one gauge, with peaks, and five others.
        let monitor = [one] + Array(repeating: counter, count: 5)
        #expect(table.declare(all: monitor, priority: .monitor)?.count == 6)
        #expect(table.declare(all: [counter], priority: .monitor) == nil, "the built-ins' room is theirs")
        #expect(table.declare(all: [one, one], priority: .builtin)?.count == 2)
        #expect(table.liveCount == 20)
        // The process-wide table keeps room for 64 monitors, each with its `swift_tasks_peak`.
        #expect(SeriesTable.shared.monitorHeadroom == 64 * 7)
    }

    /// The daemon adds `<gauge>_peak` for a gauge with peak samples (every monitor's `swift_tasks`) and
    /// counts it under its per-client cap: so must the table, or at the cap the daemon refuses series
    /// the process believes live.
    @Test func aMonitorsGaugeTakesAPlaceForItsPeak() throws {
        let table = SeriesTable(limit: 14)
        let gauge = SeriesDescriptor(name: "swift_tasks", help: "", type: .gauge)
        let counter = SeriesDescriptor(name: "swift_tasks_created_total", help: "", type: .counter)
        let first = try #require(table.declare(all: [gauge, counter], priority: .monitor))
        #expect(table.liveCount == 3)
        // An app gauge gets no peaks: one place.
        #expect(table.declare(all: [gauge]) != nil)
        #expect(table.liveCount == 4)
        #expect(table.declare(all: Array(repeating: counter, count: 9)) != nil)
        #expect(table.liveCount == 13)
        #expect(table.declare(all: [gauge], priority: .monitor) == nil, "needs two places, one is left")
        #expect(table.declare(all: [counter], priority: .monitor) != nil)
        // Retiring the gauge frees both.
        table.retire(first[0])
        #expect(table.liveCount == 12)
        #expect(table.declare(all: [gauge], priority: .monitor) != nil)
    }

    @Test func declarationsTheDaemonWouldRefuseAreDroppedAndCounted() {
        let table = SeriesTable(limit: 100)
        let tooManyLabels = (0...Wire.maxLabels).map { Label("l\($0)", "v") }
        let refused: [SeriesDescriptor] = [
            SeriesDescriptor(name: String(repeating: "a", count: Wire.maxNameLength + 1), help: "", type: .gauge),
            SeriesDescriptor(name: "9lives", help: "", type: .gauge),
            SeriesDescriptor(name: "a", help: "", type: .gauge, labels: tooManyLabels),
            SeriesDescriptor(
                name: "a", help: "", type: .gauge,
                labels: [Label("k", String(repeating: "v", count: Wire.maxTextLength + 1))]),
            SeriesDescriptor(name: "a", help: "", type: .gauge, labels: [Label("bad-name", "v")]),
            SeriesDescriptor(name: "a", help: "", type: .gauge, labels: [Label("pid", "1")]),
            SeriesDescriptor(name: "a", help: "", type: .gauge, labels: [Label("k", "1"), Label("k", "2")]),
            SeriesDescriptor(name: "a", help: "", type: .histogram, labels: [Label("le", "1")], bounds: [1]),
            SeriesDescriptor(name: "a", help: "", type: .histogram, bounds: [2, 1]),
            SeriesDescriptor(name: "a", help: "", type: .histogram, bounds: [1, .infinity]),
            SeriesDescriptor(
                name: "a", help: "", type: .histogram, bounds: (0...Wire.maxBounds).map(Double.init)),
            // Every string within its limit, all of them past one frame.
            SeriesDescriptor(
                name: "a", help: "", type: .gauge,
                labels: (0..<Wire.maxLabels).map { Label("l\($0)", String(repeating: "v", count: Wire.maxTextLength)) }),
        ]
        for descriptor in refused {
            #expect(table.declare(all: [descriptor]) == nil, "\(descriptor.name) \(descriptor.labels)")
        }
        #expect(table.dropped == UInt64(refused.count))
        // One bad descriptor refuses its whole batch.
        let good = SeriesDescriptor(name: "fine", help: "", type: .gauge)
        #expect(table.declare(all: [good, refused[0]]) == nil)
        #expect(table.liveCount == 0)
        // Over-long help is cut at a character boundary instead: a 3-byte character straddles the limit.
        let help = String(repeating: "a", count: Wire.maxTextLength - 1) + "€"
        let id = table.declare(all: [SeriesDescriptor(name: "fine", help: help, type: .counter)])
        #expect(id != nil)
        let declared = table.liveDeclarations.first
        #expect(declared?.help == String(repeating: "a", count: Wire.maxTextLength - 1))
        // Every declaration the table lets through decodes.
        for frame in FrameEncoder.declare(table.liveDeclarations) {
            #expect(throws: Never.self) { try FrameDecoder.decode(frame) }
        }
    }

    @Test func reportsLeaveOutWhatTheDaemonWouldRefuseAFrameFor() {
        var builder = ReportBuilder()
        builder.value(SeriesID(rawValue: 1), 1)
        builder.value(SeriesID(rawValue: 2), .nan)
        builder.value(SeriesID(rawValue: 3), .infinity)
        builder.histogram(SeriesID(rawValue: 4), buckets: [1], sum: .nan)
        builder.histogram(SeriesID(rawValue: 5), buckets: [1], sum: 2)
        #expect(builder.values.map(\.id) == [1, 3])
        #expect(builder.histograms.map(\.id) == [5])
        let histogram = AtomicHistogram(bounds: [1])
        for value in [0.5, .infinity, -.infinity, .nan, 2] { histogram.record(value) }
        #expect(histogram.snapshot().buckets == [1, 1])
        #expect(histogram.snapshot().sum == 2.5)
    }

    @Test func stringsAreCutAtCharacterBoundaries() {
        #expect(Wire.prefix("abc", utf8Limit: 5) == "abc")
        #expect(Wire.prefix("ab€", utf8Limit: 4) == "ab")
        #expect(Wire.prefix("ab€", utf8Limit: 5) == "ab€")
        #expect(Wire.prefix("€€", utf8Limit: 2) == "")
        #expect(Wire.prefix("a😀", utf8Limit: 4) == "a")
    }

    @Test func histogramsBucketByUpperBound() {
        let histogram = AtomicHistogram(bounds: [1, 2, 5])
        for value in [0.5, 1, 1.5, 5, 7] { histogram.record(value) }
        let snapshot = histogram.snapshot()
        #expect(snapshot.buckets == [2, 1, 1, 1])
        #expect(snapshot.sum == 15)
        #expect(histogram.count == 5)
    }
}

/// Forwards every job to the global concurrent executor and counts them: evidence that a task ran
/// under the executor preference it was given.
final class CountingTaskExecutor: TaskExecutor {
    let jobs = Atomic<Int>(0)

    func enqueue(_ job: consuming ExecutorJob) {
        jobs.add(1, ordering: .relaxed)
        globalConcurrentExecutor.enqueue(job)
    }
}

@Suite struct ExecutorPreferenceTests {
    @Test func spawnsWithAnExecutorPreferenceRunThereAndAreCounted() async throws {
        let executor = CountingTaskExecutor()
        let monitor = uniqueMonitor("preference")
        let n = 20
        for _ in 0..<n {
            _ = await monitor.task(executorPreference: executor) { 1 }.value
            _ = await monitor.task(executorPreference: executor) { () async throws -> Int in throw Failure() }.result
            _ = await monitor.detached(executorPreference: executor) { 1 }.value
            let cancelled = monitor.detached(executorPreference: executor) { () async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 1
            }
            cancelled.cancel()
            _ = await cancelled.result
        }
        await withTaskGroup(of: Int.self) { group in
            for index in 0..<n { group.addTask(monitor: monitor, executorPreference: executor) { index } }
            for await _ in group {}
        }
        // Every one of the 5 n tasks started through the executor at least once.
        #expect(executor.jobs.load(ordering: .relaxed) >= 5 * n)
        let snapshot = try await settle(monitor)
        #if !TASKWATCH_SILENT
            #expect(snapshot.created == UInt64(5 * n))
            #expect(snapshot.finished(.success) == UInt64(3 * n))
            #expect(snapshot.finished(.error) == UInt64(n))
            #expect(snapshot.finished(.cancelled) == UInt64(n))
            #expect(snapshot.live == 0)
        #endif
    }
}
