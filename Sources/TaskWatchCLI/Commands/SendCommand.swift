import ArgumentParser
import CTaskWatchSocket
import Glibc
import TaskWatchWire

/// `taskwatch send`: speaks the wire protocol directly, without the client library. For scripts, for
/// checking a daemon by hand, and for tests that need a sender whose every byte they control.
struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send task series to taskwatchd over the raw wire protocol.",
        discussion: """
            SIGINT or SIGTERM ends a --hold early: the goodbye is sent, so the daemon drops the series at \
            once, and the exit status is 0; a second signal kills. Exit status: 0 sent; 1 the socket could \
            not be reached, or the daemon refused the connection; 64 bad arguments.
            """
    )

    @Option(help: socketHelp)
    var socket: String?

    @Option(help: "The process label.")
    var process = "taskwatch-send"

    @Option(parsing: .unconditional, help: "The pid to claim in the hello; the daemon must ignore it.")
    var claimPid: UInt32 = 0

    @Option(name: .customLong("task"), help: "A task monitor and its live count, as NAME=LIVE. Repeatable.")
    var tasks: [String] = ["default=1"]

    // Unconditional, here and below, so a negative number is read as a value, not as an option.
    @Option(parsing: .unconditional, help: "Initial value of swift_tasks_created_total for each task.")
    var created: Double = 0

    @Option(parsing: .unconditional, help: "Added to every live count and created counter on each report.")
    var grow: Double = 0

    @Option(
        parsing: .unconditional,
        help:
            "How long to keep reporting before saying goodbye, e.g. 10s (0 sends once, without a goodbye, so the values stay for the daemon's --client.grace)."
    )
    var hold = DurationArgument.literal("0s")

    @Option(parsing: .unconditional, help: "Report interval, e.g. 100ms.")
    var interval = DurationArgument.literal("100ms")

    func validate() throws {
        var names = Set<String>()
        for spec in tasks {
            guard let monitor = Self.monitor(spec) else {
                throw ValidationError("bad --task: \(spec) (expected NAME=LIVE, e.g. requests=3)")
            }
            // Both would declare the same series; the daemon would keep one of them without a word.
            guard names.insert(monitor.name).inserted else {
                throw ValidationError("duplicate --task: \(monitor.name) (give each task monitor once)")
            }
        }
        if interval.nanoseconds == 0 { throw ValidationError("--interval must be above 0") }
        // What the daemon would refuse, said here: it refuses without a word to the sender.
        if process.isEmpty || process.utf8.count > Wire.maxTextLength {
            throw ValidationError("--process must be 1 to \(Wire.maxTextLength) bytes")
        }
        for monitor in tasks.compactMap(Self.monitor) {
            if monitor.name.utf8.count > Wire.maxTextLength {
                throw ValidationError(
                    "--task name longer than \(Wire.maxTextLength) bytes: \(monitor.name.prefix(40))…")
            }
            if !monitor.live.isFinite { throw ValidationError("--task \(monitor.name): the live count must be finite") }
        }
        if !(created >= 0 && created.isFinite) { throw ValidationError("--created must be 0 or more (a counter)") }
        if !(grow >= 0 && grow.isFinite) {
            throw ValidationError("--grow must be 0 or more: it is added to a counter, which may not go down")
        }
        try validateSocketOption(socket)
    }

    /// `NAME=LIVE` as a name and a live count, or nil.
    static func monitor(_ spec: String) -> (name: String, live: Double)? {
        let parts = spec.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let live = Double(parts[1]) else { return nil }
        return (String(parts[0]), live)
    }

    mutating func run() throws {
        // SIGINT or SIGTERM ends a --hold early, with the goodbye: killed without one, the series stayed
        // on the daemon for its --client.grace. A second signal kills.
        StopSignal.install()
        let holdNanos = hold.nanoseconds
        let intervalNanos = interval.nanoseconds
        var monitors = tasks.compactMap(Self.monitor)
        let path =
            socket
            ?? SocketLocation.clientPath(environment: Environment.variables(), uid: getuid())
        var declarations: [SeriesDeclaration] = []
        for (index, monitor) in monitors.enumerated() {
            let labels = [Label("task", monitor.name)]
            declarations.append(
                SeriesDeclaration(
                    id: UInt32(2 * index + 1), type: .gauge, name: "swift_tasks", help: "Live instrumented tasks.",
                    labels: labels))
            declarations.append(
                SeriesDeclaration(
                    id: UInt32(2 * index + 2), type: .counter, name: "swift_tasks_created_total",
                    help: "Tasks started.", labels: labels))
        }
        let hello = Hello(
            claimedPID: claimPid, intervalNanoseconds: intervalNanos, process: process, clientVersion: "taskwatch-send")
        var connection = RawConnection(path: path)
        var created = self.created
        var due = monotonicNanoseconds()
        let schedule = SendSchedule(interval: intervalNanos, end: due + holdNanos)
        var warned = false
        while true {
            connection.checkKept(waitMilliseconds: 0)
            var updates: [ValueUpdate] = []
            for (index, monitor) in monitors.enumerated() {
                updates.append(ValueUpdate(id: UInt32(2 * index + 1), value: monitor.live))
                updates.append(ValueUpdate(id: UInt32(2 * index + 2), value: created))
            }
            let frames = [FrameEncoder.hello(hello)] + FrameEncoder.declare(declarations)
            connection.send(greeting: frames, report: FrameEncoder.values(updates))
            if monotonicNanoseconds() >= schedule.end || StopSignal.isRequested { break }
            if !connection.everConnected && !warned {
                // Say so now rather than only when --hold runs out: a long hold would otherwise look
                // like a working send.
                warned = true
                Terminal.line(
                    "taskwatch send: cannot connect to \(path): \(connection.lastErrorText); retrying until --hold ends",
                    to: STDERR_FILENO)
            }
            let next = schedule.next(after: due)
            SendSchedule.sleep(until: next.at)
            guard next.reports, !StopSignal.isRequested else { break }
            due = next.at
            created += grow
            for index in monitors.indices { monitors[index].live += grow }
        }
        connection.checkKept(waitMilliseconds: IngestSocket.refusalWaitMilliseconds)
        // A goodbye ends the series at once; a single send is there to be seen, so it leaves them for
        // the grace period.
        if holdNanos > 0 { connection.send(greeting: [], report: [FrameEncoder.goodbye()]) }
        if !connection.everConnected {
            Terminal.line("taskwatch send: cannot connect to \(path): \(connection.lastErrorText)", to: STDERR_FILENO)
            throw ExitCode.failure
        }
        // Connecting proves little: the kernel completes a connect before the daemon accepts it, and the
        // daemon refuses a peer (its uid, a limit) or its hello by closing the connection.
        if !connection.everKept {
            Terminal.line(
                "taskwatch send: \(IngestSocket.refusalAdvice(path)) (or refused its hello: "
                    + "taskwatch_messages_rejected_total)", to: STDERR_FILENO)
            throw ExitCode.failure
        }
        if connection.closedByDaemon > 0 {
            Terminal.line(
                "taskwatch send: the daemon closed the connection \(connection.closedByDaemon) time(s) "
                    + "(a restart, or a refusal); the last one was kept", to: STDERR_FILENO)
        }
    }
}

/// A blocking SEQPACKET connection that reconnects, re-sending the greeting, when the daemon goes away.
struct RawConnection {
    let path: String
    private var fd: Int32 = -1
    private(set) var everConnected = false
    /// Whether a connection was still open when checked after its greeting: the daemon kept it.
    private(set) var everKept = false
    /// Connections the daemon closed: refused at accept or at the hello, closed for refused frames, or
    /// gone with a daemon that stopped.
    private(set) var closedByDaemon = 0
    /// The errno of the last failed connect, for the error message when none succeeded.
    private(set) var lastError: Int32 = 0
    /// `lastError` in words, or what the path is when it is no socket.
    var lastErrorText: String { IngestSocket.connectFailure(path, lastError) }

    init(path: String) { self.path = path }

    mutating func send(greeting: [[UInt8]], report: [[UInt8]]) {
        if fd < 0 {
            guard connect() else { return }
            for frame in greeting where !write(frame) { return reset() }
        }
        for frame in report where !write(frame) { return reset() }
    }

    /// Notes whether the daemon closed the connection, waiting up to `waitMilliseconds` for it to, and
    /// closes this end if it did (the next send reconnects).
    mutating func checkKept(waitMilliseconds: Int32) {
        guard fd >= 0 else { return }
        if IngestSocket.peerClosed(fd, waitMilliseconds: waitMilliseconds) {
            closedByDaemon += 1
            reset()
        } else {
            everKept = true
        }
    }

    private mutating func connect() -> Bool {
        fd = tw_seqpacket_socket()
        guard fd >= 0 else {
            lastError = errno
            return false
        }
        // The socket is non-blocking; a local connect either succeeds or fails at once.
        guard tw_unix_connect(fd, path) == 0 else {
            lastError = errno
            reset()
            return false
        }
        everConnected = true
        return true
    }

    private mutating func write(_ frame: [UInt8]) -> Bool {
        for _ in 0..<1_000 {
            let sent = frame.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) }
            if sent == frame.count { return true }
            guard sent < 0, errno == EAGAIN || errno == EINTR else { return false }
            usleep(1_000)
        }
        return false
    }

    private mutating func reset() {
        if fd >= 0 { close(fd) }
        fd = -1
    }
}

func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// The process environment as a dictionary, without Foundation.
enum Environment {
    static func variables() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let separator = text.firstIndex(of: "=") {
                result[String(text[..<separator])] = String(text[text.index(after: separator)...])
            }
            pointer += 1
        }
        return result
    }
}
