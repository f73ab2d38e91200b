import Glibc
import Synchronization
import TaskWatchWire

/// Set by SIGINT or SIGTERM, so long-running subcommands end their loops and report.
enum StopSignal {
    static let requested = Atomic<Bool>(false)

    static var isRequested: Bool { requested.load(ordering: .relaxed) }

    static func install() {
        for number in [SIGINT, SIGTERM] {
            signal(number) { _ in StopSignal.requested.store(true, ordering: .relaxed) }
        }
    }
}

/// Parses a duration flag (`2s`, `500ms`, `1m`), or throws a message naming the flag.
func parseDuration(_ text: String, flag: String) throws -> UInt64 {
    guard let nanoseconds = DurationText.nanoseconds(text) else {
        throw CLIError("bad --\(flag): \(text) (expected e.g. 500ms, 2s, 1m)")
    }
    return nanoseconds
}

/// A failure reported as one line on stderr with a chosen exit status.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var status: Int32

    init(_ description: String, status: Int32 = 2) {
        self.description = description
        self.status = status
    }
}
