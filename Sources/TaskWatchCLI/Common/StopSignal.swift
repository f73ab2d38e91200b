import Glibc
import Synchronization

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

/// A failure reported as one line on stderr with a chosen exit status.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var status: Int32

    init(_ description: String, status: Int32 = 1) {
        self.description = description
        self.status = status
    }
}
