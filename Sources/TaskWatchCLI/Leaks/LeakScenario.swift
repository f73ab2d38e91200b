import Synchronization
import TaskWatch

/// The task leaks `taskwatch leak` reproduces. Each request of a scenario does the same work in both
/// modes; the leaky mode keeps a task alive for good, the fixed mode lets it end.
enum LeakScenario: String, CaseIterable, Sendable {
    /// An `AsyncStream` whose continuation is dropped without `finish()`: its consumer waits forever.
    case stream
    /// An unstructured `Task` started in a request handler that outlives the request.
    case request
    /// A heartbeat loop started per session and never cancelled.
    case heartbeat
    /// A continuation that is never resumed because the reply it waits for never comes.
    case continuation
    /// A retry loop whose `try? await Task.sleep` swallows cancellation, so it never stops.
    case retry
    /// A task group whose children wait for an event that never comes.
    case group

    var summary: String {
        switch self {
        case .stream: "an AsyncStream never finished: its consumer task waits forever"
        case .request: "an unstructured Task in a request handler outlives its request"
        case .heartbeat: "a heartbeat loop is never cancelled when its session ends"
        case .continuation: "a continuation is never resumed when its reply is lost"
        case .retry: "a retry loop with try? Task.sleep ignores cancellation"
        case .group: "a task group's children wait for an event that never comes"
        }
    }
}

/// Shared state of a scenario run: the registries a real server would keep.
final class LeakState: Sendable {
    let fixed: Bool
    let monitor: TaskMonitor
    /// Subscribers of the `stream` scenario's broadcaster, by request.
    let subscribers = Mutex<[Int: AsyncStream<Int>.Continuation]>([:])
    /// Continuations of the `continuation` scenario waiting for replies, by request.
    let pending = Mutex<[Int: CheckedContinuation<Int?, Never>]>([:])
    /// Event sources the `group` scenario's children wait on, by request.
    let quorum = Mutex<[Int: [AsyncStream<Int>.Continuation]]>([:])
    /// Heartbeats sent, retry attempts made: proof the workload runs.
    let work = Atomic<Int>(0)

    init(scenario: LeakScenario, fixed: Bool) {
        self.fixed = fixed
        monitor = TaskMonitor(scenario.rawValue)
    }
}

/// One request of each scenario. Request handlers are plain tasks; what the monitor counts is the
/// work that should end with the request.
enum LeakWorkload {
    /// How long a request takes before it answers.
    static let requestTime: Duration = .milliseconds(20)
    /// How long the fixed twins wait for a reply or an event before giving up.
    static let timeout: Duration = .milliseconds(100)

    static func handle(_ scenario: LeakScenario, request id: Int, state: LeakState) async {
        switch scenario {
        case .stream: await stream(id, state)
        case .request: await request(id, state)
        case .heartbeat: await heartbeat(id, state)
        case .continuation: await continuation(id, state)
        case .retry: await retry(id, state)
        case .group: await group(id, state)
        }
    }

    /// Subscribes to a broadcaster for the length of a request. Unsubscribing removes the continuation
    /// from the broadcaster; the leaky version forgets to `finish()` it, so the consumer never ends.
    static func stream(_ id: Int, _ state: LeakState) async {
        let (events, continuation) = AsyncStream.makeStream(of: Int.self)
        state.subscribers.withLock { $0[id] = continuation }
        state.monitor.task {
            for await _ in events { state.work.add(1, ordering: .relaxed) }
        }
        continuation.yield(id)
        try? await Task.sleep(for: requestTime)
        let removed = state.subscribers.withLock { $0.removeValue(forKey: id) }
        if state.fixed { removed?.finish() }
    }

    /// Starts a background refresh that waits on a slow backend. The leaky handler returns and
    /// leaves it running; the fixed one cancels it when the request ends.
    static func request(_ id: Int, _ state: LeakState) async {
        let refresh = state.monitor.task {
            // The backend answers in an hour: far longer than any request.
            try? await Task.sleep(for: .seconds(3_600))
            state.work.add(1, ordering: .relaxed)
        }
        try? await Task.sleep(for: requestTime)
        if state.fixed { refresh.cancel() }
    }

    /// A session with a heartbeat every second. The leaky session ends without cancelling it.
    static func heartbeat(_ id: Int, _ state: LeakState) async {
        let beat = state.monitor.task {
            while !Task.isCancelled {
                state.work.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .seconds(1))
            }
        }
        try? await Task.sleep(for: requestTime)
        if state.fixed { beat.cancel() }
    }

    /// Calls a backend whose reply is lost. The leaky caller waits on a continuation nobody resumes;
    /// the fixed one arms a timeout that resumes it with nil.
    static func continuation(_ id: Int, _ state: LeakState) async {
        state.monitor.task {
            let reply: Int? = await withCheckedContinuation { continuation in
                state.pending.withLock { $0[id] = continuation }
                if state.fixed {
                    Task {
                        try? await Task.sleep(for: timeout)
                        state.pending.withLock { $0.removeValue(forKey: id) }?.resume(returning: nil)
                    }
                }
            }
            if reply == nil { state.work.add(1, ordering: .relaxed) }
        }
    }

    /// A call to a backend that is down, retried with backoff, cancelled when the request times out.
    /// The leaky loop's `try? await Task.sleep` swallows the cancellation and retries forever.
    static func retry(_ id: Int, _ state: LeakState) async {
        let call = state.monitor.task {
            if state.fixed {
                do {
                    while true {
                        try Task.checkCancellation()
                        await failingAttempt(state)
                        try await Task.sleep(for: .milliseconds(50))
                    }
                } catch {}
            } else {
                while true {
                    await failingAttempt(state)
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
        }
        try? await Task.sleep(for: requestTime)
        call.cancel()
    }

    /// An attempt on a backend that is down: fails after 100 ms, and cannot be cancelled early.
    static func failingAttempt(_ state: LeakState) async {
        await Task.detached { try? await Task.sleep(for: .milliseconds(100)) }.value
        state.work.add(1, ordering: .relaxed)
    }

    /// Asks three replicas and waits for their acknowledgements, which never come. The leaky group
    /// waits for all of them; the fixed one adds a deadline and cancels the rest when it passes.
    static func group(_ id: Int, _ state: LeakState) async {
        var sources: [AsyncStream<Int>] = []
        var continuations: [AsyncStream<Int>.Continuation] = []
        for _ in 0..<3 {
            let (events, continuation) = AsyncStream.makeStream(of: Int.self)
            sources.append(events)
            continuations.append(continuation)
        }
        state.quorum.withLock { $0[id] = continuations }
        let replicas = sources
        let monitor = state.monitor
        let fixed = state.fixed
        Task {
            await withTaskGroup(of: Bool.self) { group in
                for events in replicas {
                    group.addTask(monitor: monitor) {
                        for await _ in events { return true }
                        return false
                    }
                }
                if fixed {
                    group.addTask {
                        try? await Task.sleep(for: timeout)
                        return false
                    }
                    _ = await group.next()
                    group.cancelAll()
                }
                for await _ in group {}
            }
            state.work.add(1, ordering: .relaxed)
            if fixed { _ = state.quorum.withLock { $0.removeValue(forKey: id) } }
        }
    }
}

/// Drives a scenario at a request rate until stopped, printing a line a second.
struct LeakRunner {
    let scenario: LeakScenario
    let fixed: Bool
    let rate: Double
    let durationNanoseconds: UInt64?
    /// Whether the monitor counts: not with instrumentation disabled, when its figures stay at zero.
    var counted = true

    func run() async {
        let state = LeakState(scenario: scenario, fixed: fixed)
        let interval = UInt64(1e9 / rate)
        let started = monotonicNanoseconds()
        var next = started
        var lastPrint = started
        var requests = 0
        while !StopSignal.isRequested {
            let now = monotonicNanoseconds()
            if let durationNanoseconds, now - started >= durationNanoseconds { break }
            // Before the requests: a rate the machine cannot keep up with keeps this loop starting them,
            // and the line a second stopped until the run ended.
            if now - lastPrint >= 1_000_000_000 {
                lastPrint = now
                Terminal.line(statusLine(state: state, requests: requests, elapsed: now - started))
            }
            if now >= next {
                let id = requests
                requests += 1
                next += interval
                Task { await LeakWorkload.handle(scenario, request: id, state: state) }
                continue
            }
            try? await Task.sleep(nanoseconds: min(next - now, 50_000_000))
        }
        Terminal.line(statusLine(state: state, requests: requests, elapsed: monotonicNanoseconds() - started))
    }

    func statusLine(state: LeakState, requests: Int, elapsed: UInt64) -> String {
        let snapshot = state.monitor.snapshot()
        let tasks =
            counted
            ? "live=\(snapshot.live) created=\(snapshot.created) finished=\(snapshot.finished.reduce(0, +))"
            : "tasks not counted (instrumentation disabled)"
        return "leak \(scenario.rawValue) \(fixed ? "fixed" : "leaky") t=\(Format.fixed(Double(elapsed) / 1e9, 1))s "
            + "requests=\(requests) \(tasks) work=\(state.work.load(ordering: .relaxed))"
    }
}
