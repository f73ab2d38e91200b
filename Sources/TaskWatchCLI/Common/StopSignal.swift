import Glibc
import Synchronization

/// SIGINT and SIGTERM for the long-running subcommands. The first asks them to stop: they cancel their
/// work and end with what they have. The second kills, as it would without a handler, so a stop that
/// takes too long can always be cut short. With a child registered (`stress --compare`), every signal
/// is passed on to the child first: it runs in a process group of its own, so a Ctrl-C at the terminal
/// reaches only this process.
enum StopSignal {
    static let requested = Atomic<Bool>(false)
    /// The signal that asked first, or 0 before one came.
    static let number = Atomic<Int32>(0)
    /// The child every signal is passed on to: its pid; 0 none; -1 none, and a signal came that no
    /// child got (`adopt` passes it on).
    static let child = Atomic<Int32>(0)

    static var isRequested: Bool { requested.load(ordering: .relaxed) }

    /// The conventional exit status of a command ended by the signal that asked to stop, 128 plus its
    /// number: 130 for SIGINT, 143 for SIGTERM (130 before any came).
    static var stoppedStatus: Int32 {
        let signal = number.load(ordering: .sequentiallyConsistent)
        return 128 + (signal == 0 ? SIGINT : signal)
    }

    /// Sleeps `nanoseconds` in slices of at most 100 ms, and returns early once a stop is requested: a
    /// long `--step` held a Ctrl-C up for as long.
    static func sleep(nanoseconds: UInt64) async {
        var left = nanoseconds
        while left > 0 && !isRequested {
            let slice = min(left, 100_000_000)
            try? await Task.sleep(nanoseconds: slice)
            left -= slice
        }
    }

    static func install() {
        // Touched here first: a global's lazy initialisation is not async-signal-safe.
        _ = requested.load(ordering: .relaxed)
        _ = child.load(ordering: .relaxed)
        _ = number.load(ordering: .relaxed)
        for number in [SIGINT, SIGTERM] {
            signal(number) { number in
                StopSignal.forward(number)
                _ = StopSignal.number.compareExchange(expected: 0, desired: number, ordering: .sequentiallyConsistent)
                if StopSignal.requested.exchange(true, ordering: .sequentiallyConsistent) {
                    // The second signal: die of it. It is blocked while its handler runs, so the raised
                    // one is delivered, with the default disposition, as soon as this returns.
                    signal(SIGINT, SIG_DFL)
                    signal(SIGTERM, SIG_DFL)
                    raise(number)
                }
            }
        }
    }

    /// Passes `number` on to the registered child, or marks it missed when there is none. Called from
    /// the handler: atomics and kill(2) only.
    private static func forward(_ number: Int32) {
        var current = child.load(ordering: .sequentiallyConsistent)
        while true {
            if current > 0 {
                kill(current, number)
                return
            }
            let (exchanged, original) = child.compareExchange(
                expected: current, desired: -1, ordering: .sequentiallyConsistent)
            if exchanged { return }
            current = original
        }
    }

    /// Registers `pid` to get every signal from now on. True when a signal came before that no child
    /// got: the caller then passes the stop on itself. Exactly one of the two does, whatever the timing.
    static func adopt(_ pid: Int32) -> Bool {
        let (exchanged, _) = child.compareExchange(expected: 0, desired: pid, ordering: .sequentiallyConsistent)
        if exchanged { return false }
        child.store(pid, ordering: .sequentiallyConsistent)
        return true
    }

    /// Stops passing signals on: the child has exited.
    static func release() { child.store(0, ordering: .sequentiallyConsistent) }
}

/// A stop was requested while waiting (SIGINT or SIGTERM): not a failure, the command just ends.
struct StopRequested: Error {}

/// A failure reported as one line on stderr with a chosen exit status.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var status: Int32

    init(_ description: String, status: Int32 = 1) {
        self.description = description
        self.status = status
    }
}
