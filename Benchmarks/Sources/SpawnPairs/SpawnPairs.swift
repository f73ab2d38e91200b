import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Spawn cost, plain against monitored, measured in interleaved rounds of one process.
///
/// Why interleaved: on a small virtual machine the speed of the same code drifts by tens of percent
/// between processes and over seconds, so two benchmarks run one after the other (or two processes)
/// compare the machine's phases as much as the code. A round runs a batch of one side and then a
/// batch of the other, the order alternating from round to round, so both sides share every slow
/// phase; each round gives a ratio and the rounds are summarized by their median.
///
/// The pairs under test: `ticket` (the allocation-free form, counting inside the spawned closure under
/// a `TaskTicket`), and `task` and `detached` (the drop-in forms, which wrap the operation). Besides
/// them, three controls calibrate the method: `identical` compares plain with
/// plain (the harness's own bias, expected 1.000); `oneMoreObject` compares plain with a plain spawn
/// whose operation captures one extra heap object (the price of one more allocation per spawn); and
/// `wrapped` compares plain with a plain spawn whose operation is a closure that only calls the
/// caller's operation: the wrapping every drop-in monitor needs to see a task end, with no counting.
/// `counting` then compares that wrapped spawn with the monitored one: what TaskWatch adds on top.
/// The ticket's cost splits the same way: `ticketBytes` compares plain with a plain spawn that
/// captures as many bytes as a ticket (the closure context grows by 16 bytes, which moves it up one
/// malloc size class), and `ticketCounting` compares that spawn with the ticket: the counting alone.
public enum SpawnPairs {
    public static let monitor = TaskMonitor("spawn-pairs")

    /// One way to spawn a task that returns its index.
    public enum Side: Sendable {
        case plainTask, monitoredTask, plainDetached, monitoredDetached, oneMoreObject, wrappedTask, ticketTask
        case ticketSized
    }

    /// Two sides to compare: `candidate` over `baseline`.
    public struct Pair: Sendable {
        public let name: String
        public let baseline: Side
        public let candidate: Side
    }

    public static let all = [
        Pair(name: "identical", baseline: .plainTask, candidate: .plainTask),
        Pair(name: "ticket", baseline: .plainTask, candidate: .ticketTask),
        Pair(name: "task", baseline: .plainTask, candidate: .monitoredTask),
        Pair(name: "detached", baseline: .plainDetached, candidate: .monitoredDetached),
        Pair(name: "oneMoreObject", baseline: .plainTask, candidate: .oneMoreObject),
        Pair(name: "wrapped", baseline: .plainTask, candidate: .wrappedTask),
        Pair(name: "counting", baseline: .wrappedTask, candidate: .monitoredTask),
        Pair(name: "ticketBytes", baseline: .plainTask, candidate: .ticketSized),
        Pair(name: "ticketCounting", baseline: .ticketSized, candidate: .ticketTask),
    ]

    /// An object to capture: its allocation and release are the cost under test.
    final class Capture: Sendable {
        let value = 0
    }

    /// As many bytes as a `TaskTicket`, to capture in a plain spawn: what the ticket adds to the
    /// spawned closure's context, without its counting.
    struct TicketSized: Sendable {
        let first: UInt
        let second: UInt64
    }

    /// Spawns `count` tasks of `side`, awaits them all and returns the elapsed nanoseconds.
    /// `tasks` is scratch space, passed in so that its allocation is not part of the measurement.
    public static func batch(_ side: Side, _ count: Int, into tasks: inout [Task<Int, Never>]) async -> UInt64 {
        let start = now()
        switch side {
        case .plainTask:
            for index in 0..<count { tasks.append(Task { index }) }
        case .monitoredTask:
            for index in 0..<count { tasks.append(monitor.task { index }) }
        case .plainDetached:
            for index in 0..<count { tasks.append(Task.detached { index }) }
        case .monitoredDetached:
            for index in 0..<count { tasks.append(monitor.detached { index }) }
        case .ticketTask:
            for index in 0..<count {
                let ticket = monitor.ticket()
                tasks.append(Task { await ticket.run { index } })
            }
        case .ticketSized:
            for index in 0..<count {
                let sized = TicketSized(first: UInt(index), second: UInt64(index) &* 3)
                tasks.append(Task { index &+ Int(truncatingIfNeeded: UInt64(sized.first) &* 3 &- sized.second) })
            }
        case .wrappedTask:
            for index in 0..<count { tasks.append(wrapped { index }) }
        case .oneMoreObject:
            for index in 0..<count {
                let capture = Capture()
                tasks.append(Task { index + capture.value })
            }
        }
        var sum = 0
        for task in tasks { sum &+= await task.value }
        let elapsed = now() - start
        tasks.removeAll(keepingCapacity: true)
        precondition(sum == count * (count - 1) / 2, "a task returned the wrong value")
        return elapsed
    }

    /// One round of `pair`: both sides, baseline first when `baselineFirst`. Returns
    /// (baseline, candidate) elapsed nanoseconds.
    public static func round(
        _ pair: Pair, batchSize: Int, baselineFirst: Bool, into tasks: inout [Task<Int, Never>]
    ) async -> (baseline: UInt64, candidate: UInt64) {
        if baselineFirst {
            let baseline = await batch(pair.baseline, batchSize, into: &tasks)
            return (baseline, await batch(pair.candidate, batchSize, into: &tasks))
        }
        let candidate = await batch(pair.candidate, batchSize, into: &tasks)
        return (await batch(pair.baseline, batchSize, into: &tasks), candidate)
    }

    /// Runs a few rounds of every pair so that the allocator, the task pools and the monitor's shards
    /// are warm before anything counts.
    public static func warmUp(batchSize: Int, into tasks: inout [Task<Int, Never>]) async {
        for pair in all {
            for index in 0..<10 {
                _ = await round(pair, batchSize: batchSize, baselineFirst: index % 2 == 0, into: &tasks)
            }
        }
    }

    /// `rounds` interleaved rounds of `batchSize` tasks a side for every pair, as one JSON object:
    /// per pair the median and quartiles of the round ratios and the mean nanoseconds per task.
    public static func run(rounds: Int, batchSize: Int) async -> String {
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(batchSize)
        await warmUp(batchSize: batchSize, into: &tasks)
        var fields: [String] = []
        for pair in all {
            var ratios: [Double] = []
            ratios.reserveCapacity(rounds)
            var baselineTotal: UInt64 = 0
            var candidateTotal: UInt64 = 0
            for index in 0..<rounds {
                let (baseline, candidate) = await round(
                    pair, batchSize: batchSize, baselineFirst: index % 2 == 0, into: &tasks)
                baselineTotal += baseline
                candidateTotal += candidate
                ratios.append(Double(candidate) / Double(baseline))
            }
            ratios.sort()
            let perSide = Double(rounds * batchSize)
            fields.append(
                "\"\(pair.name)\":{\"median_ratio\":\(ratios[rounds / 2]),"
                    + "\"p25_ratio\":\(ratios[rounds / 4]),\"p75_ratio\":\(ratios[rounds * 3 / 4]),"
                    + "\"baseline_ns_per_task\":\(Double(baselineTotal) / perSide),"
                    + "\"candidate_ns_per_task\":\(Double(candidateTotal) / perSide)}")
        }
        return "{\"rounds\":\(rounds),\"batch\":\(batchSize),\"pairs\":{" + fields.joined(separator: ",") + "}}"
    }

    /// `Task.init` around a closure that calls `operation` and does nothing else: the shape of a
    /// monitored spawn without its counting.
    static func wrapped<Success: Sendable>(
        _ operation: sending @escaping @isolated(any) () async -> Success
    ) -> Task<Success, Never> {
        Task { await operation() }
    }

    public static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
