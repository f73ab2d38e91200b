import Synchronization

/// Turns for tests that read a process-wide counter (the global executor's enqueue count) and tests
/// that flood the executor, so that no flood lands inside another test's measuring window. Swift
/// Testing runs suites in parallel; `.serialized` only orders the tests within one suite.
enum ProcessWide {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private static let state = Mutex(State())

    /// Runs `body` while no other `exclusive` body runs, first come first served.
    static func exclusive<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private static func acquire() async {
        await withCheckedContinuation { continuation in
            let mayRun = state.withLock { state in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if mayRun { continuation.resume() }
        }
    }

    private static func release() {
        // The turn passes straight to the next waiter, so `busy` stays set; decided under one lock, or a
        // waiter arriving in between could be left waiting for good.
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
