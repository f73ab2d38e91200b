import Metrics
import Synchronization
import TaskWatch

/// A server-like workload: request handlers fanning out to backends in task groups, a heartbeat, and
/// optionally a slow leak of request tasks that never end.
struct Workload: Sendable {
    let options: Options
    let requests = TaskMonitor("requests")
    let backends = TaskMonitor("backend_calls")
    let heartbeat = TaskMonitor("heartbeat")
    let handled = Counter(label: "demo_requests_total", dimensions: [("status", "ok")])
    let failed = Counter(label: "demo_requests_total", dimensions: [("status", "error")])
    let latency = Timer(label: "demo_request_duration_seconds")
    let inFlight = Meter(label: "demo_requests_in_flight")

    struct BackendError: Error {}

    /// Spawns requests at the configured rate until SIGINT or SIGTERM.
    func run() async {
        let clock = ContinuousClock()
        let tick = Duration.milliseconds(10)
        var next = clock.now
        var sequence = 0
        var debt = 0.0
        var lastHeartbeat = clock.now - .seconds(1)
        while !stopRequested.load(ordering: .relaxed) {
            debt += Double(options.rate) * 0.010
            while debt >= 1 {
                debt -= 1
                sequence += 1
                if options.leakEvery > 0 && sequence % options.leakEvery == 0 {
                    requests.task { try? await Task.sleep(for: .seconds(86_400)) }
                } else {
                    // The hot path counts through a ticket: no allocation beyond the Task's own.
                    let ticket = requests.ticket()
                    Task { [sequence] in await ticket.run { await handle(sequence) } }
                }
            }
            if clock.now - lastHeartbeat >= .seconds(1) {
                lastHeartbeat = clock.now
                heartbeat.task { try? await Task.sleep(for: .milliseconds(5)) }
            }
            next += tick
            try? await clock.sleep(until: next)
        }
    }

    private func handle(_ sequence: Int) async {
        let start = ContinuousClock.now
        inFlight.increment()
        defer { inFlight.decrement() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for backend in 0..<3 {
                    group.addTask(monitor: backends) {
                        try await Task.sleep(for: .milliseconds(Int.random(in: 1...20)))
                        // One request in fifty fails at its first backend, cancelling its siblings.
                        if backend == 0 && sequence % 50 == 0 { throw BackendError() }
                    }
                }
                try await group.waitForAll()
            }
            handled.increment()
        } catch {
            failed.increment()
        }
        latency.recordInterval(since: start)
    }
}

extension Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let (seconds, attoseconds) = elapsed.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Spawn cost of a plain `Task` against a monitored one: create, run and complete `count` tasks.
func benchmark(count: Int) async {
    final class Completions: Sendable {
        let done = Atomic<Int>(0)
    }
    let monitor = TaskMonitor("benchmark")
    let completions = Completions()
    func measure(_ spawn: () -> Void) async -> Double {
        completions.done.store(0, ordering: .relaxed)
        let start = ContinuousClock.now
        for _ in 0..<count { spawn() }
        while completions.done.load(ordering: .relaxed) < count { await Task.yield() }
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        return (Double(seconds) * 1e9 + Double(attoseconds) / 1e9) / Double(count)
    }
    // Alternating order and keeping the best round of each: on a noisy 2-core machine the minimum is
    // the most repeatable figure.
    var bestPlain = Double.infinity
    var bestMonitored = Double.infinity
    for round in 1...6 {
        if round.isMultiple(of: 2) {
            bestPlain = min(bestPlain, await measure { Task { completions.done.add(1, ordering: .relaxed) } })
            bestMonitored = min(
                bestMonitored, await measure { monitor.task { completions.done.add(1, ordering: .relaxed) } })
        } else {
            bestMonitored = min(
                bestMonitored, await measure { monitor.task { completions.done.add(1, ordering: .relaxed) } })
            bestPlain = min(bestPlain, await measure { Task { completions.done.add(1, ordering: .relaxed) } })
        }
    }
    let overhead = (bestMonitored / bestPlain - 1) * 100
    say(
        "best of 6 rounds of \(count): Task \(Int(bestPlain)) ns, monitored \(Int(bestMonitored)) ns per task "
            + "(\(overhead >= 0 ? "+" : "")\(Int(overhead.rounded()))%)")
}
