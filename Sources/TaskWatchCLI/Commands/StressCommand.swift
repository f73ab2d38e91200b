import ArgumentParser
import Foundation
import Glibc
import TaskWatch

extension StressMode: ExpressibleByArgument {}

/// `taskwatch stress`: a task workload under instrumentation, reporting to taskwatchd.
struct StressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stress",
        abstract: "Run a task workload under instrumentation and report what it costs.",
        discussion: """
            Each job stays suspended for --hold. spawn: a task per job. pool: --concurrency workers \
            (default 64) fed through an AsyncStream. group: a child of one task group per job. With \
            --limit L, a feedback loop measures live tasks every --step (jobs in flight, for the pool): \
            while above L the admitted rate drops 20 % per step, below L it recovers 20 % per step up \
            to --rate (default 20000/s with --limit). The series are swift_tasks{task="stress-MODE"}. \
            SIGINT or SIGTERM cancels the jobs in flight, drops the queued ones and prints the report so \
            far (marked interrupted); a second signal kills. --compare stopped before any run ended exits \
            130 (SIGINT) or 143 (SIGTERM).
            """
    )

    // The numeric options parse unconditionally, so `--tasks -1` reaches validate() and its message
    // instead of reading as an unknown option `-1`.
    @Option(parsing: .unconditional, help: "Jobs to run (default: 10000, or unbounded when --duration is given).")
    var tasks: Int?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Pool: workers (default: 64; with --compare, tasks/10 unless --duration alone bounds the run). "
                + "Spawn and group: the most jobs in flight (default: no cap)."))
    var concurrency: Int?

    @Option(
        help: "How jobs run: a task each (spawn, the default), on a worker pool (pool) or in a task group (group).")
    var mode: StressMode?

    @Option(parsing: .unconditional, help: "How long each job stays suspended, e.g. 1s.")
    var hold = DurationArgument.literal("1s")

    @Option(
        parsing: .unconditional,
        help: "Stop submitting after this long, e.g. 10s (default: when --tasks jobs are submitted).")
    var duration: DurationArgument?

    @Option(
        parsing: .unconditional,
        help: "Jobs per second, at most 10000000 (0: as fast as possible; with --limit, 0 means 20000).")
    var rate: Double = 0

    @Option(parsing: .unconditional, help: "Keep live tasks near this number with a feedback loop (default: no limit).")
    var limit: UInt64?

    @Option(parsing: .unconditional, help: "The feedback loop's step, e.g. 1ms (at least 100us).")
    var step = DurationArgument.literal("1ms")

    @Flag(help: "Run spawn, then pool, each in a fresh process, and print them side by side.")
    var compare = false

    @Flag(help: "Print the report as JSON on stdout.")
    var json = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Option(help: "The process label (default: $TASKWATCH_PROCESS, else taskwatch-stress).")
    var process: String?

    @Option(help: socketHelp)
    var socket: String?

    /// Set on the children of `--compare`: the parent has already warned about the socket.
    @Flag(help: .private)
    var socketChecked = false

    /// The highest `--rate`: far above what one process can spawn, and low enough that the admission
    /// arithmetic stays exact (a huge rate overflowed it).
    static let maximumRate = 10_000_000.0
    /// The highest `--limit`: more live tasks than any process holds, and a count every integer type fits.
    static let maximumLimit: UInt64 = 1_000_000_000

    func validate() throws {
        if let tasks, tasks < 0 { throw ValidationError("--tasks must not be negative") }
        // The comparison runs spawn and pool itself: a mode given with it was ignored without a word.
        if compare, let mode {
            throw ValidationError("--mode \(mode.rawValue) cannot go with --compare (it runs spawn and pool)")
        }
        try validateSocketOption(socket)
        try validateProcessOption(process)
        if let concurrency, concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
        if !(rate >= 0 && rate <= Self.maximumRate) {
            throw ValidationError("--rate must be from 0 to \(Int(Self.maximumRate)) jobs a second")
        }
        if let limit, limit < 1 || limit > Self.maximumLimit {
            throw ValidationError("--limit must be from 1 to \(Self.maximumLimit)")
        }
    }

    func options() -> StressOptions {
        var options = StressOptions()
        options.mode = mode ?? .spawn
        options.holdNanoseconds = hold.nanoseconds
        options.durationNanoseconds = duration?.nanoseconds
        options.tasks = tasks ?? (options.durationNanoseconds == nil ? 10_000 : nil)
        options.concurrency = concurrency
        options.rate = rate
        options.limit = limit
        options.stepNanoseconds = max(100_000, step.nanoseconds)
        options.instrumentationDisabled = configuration.isDisabled
        if !quiet {
            options.progress = Terminal.isTerminal(STDERR_FILENO) ? .terminal : .plain
        }
        return options
    }

    /// The reporter's configuration: the environment's, with `--socket` and `--process` over it.
    var configuration: Configuration {
        var configuration = Configuration()
        if let socket { configuration.socketPath = socket }
        configuration.processName =
            process ?? Environment.variables()["TASKWATCH_PROCESS"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "taskwatch-stress"
        // A run's final report stays on /metrics for the daemon's grace period, so a scrape after the
        // run (or after Ctrl-C) still sees its totals, as CLIStopTests expects.
        configuration.saysGoodbyeAtExit = false
        return configuration
    }

    func run() async throws {
        do {
            if compare {
                try await runCompare()
            } else {
                try await runOne()
            }
        } catch let error as CLIError {
            Terminal.line("taskwatch stress: \(error.description)", to: STDERR_FILENO)
            throw ExitCode(error.status)
        }
    }

    /// Says once, before the run, when its reports go nowhere.
    private func warnIfNobodyListens() {
        let configuration = self.configuration
        guard !socketChecked else { return }
        if let reason = Instrumentation.disabledReason(configuration) {
            Terminal.line("taskwatch stress: \(reason): nothing is reported to taskwatchd", to: STDERR_FILENO)
        } else if let warning = IngestSocket.warning(configuration.socketPath) {
            Terminal.line(warning, to: STDERR_FILENO)
        }
    }

    private func runOne() async throws {
        let options = self.options()
        StopSignal.install()
        warnIfNobodyListens()
        let configuration = self.configuration
        TaskWatch.start(configuration)
        let runner = StressRunner(options: options)
        let report = await Task.detached { await runner.run() }.value
        Instrumentation.sendFinalReport()
        if json {
            Terminal.line(try Self.encode(report))
        } else {
            Terminal.line(report.text)
        }
    }

    static func encode<Value: Encodable>(_ value: Value) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// The pool's workers under `--compare`: a tenth of the jobs, so that it holds the same jobs with ten
    /// times fewer tasks. When only `--duration` bounds the run there is no job count to divide, so the
    /// pool's usual default.
    var comparePoolWorkers: Int {
        if let concurrency { return concurrency }
        guard let jobs = tasks ?? (duration == nil ? 10_000 : nil) else { return StressOptions.defaultWorkers }
        return max(1, jobs / 10)
    }

    /// Arguments for one child run of `--compare`: the options as given, so the child chooses the same
    /// defaults (with `--duration` alone, no bound on the jobs).
    func childArguments(mode: StressMode) -> [String] {
        var arguments = [
            "stress", "--mode", mode.rawValue, "--json", "--quiet", "--socket-checked", "--hold", hold.text, "--step",
            step.text,
        ]
        if let tasks { arguments += ["--tasks", String(tasks)] }
        if let duration { arguments += ["--duration", duration.text] }
        if rate > 0 { arguments += ["--rate", String(rate)] }
        if let limit { arguments += ["--limit", String(limit)] }
        if mode == .pool {
            arguments += ["--concurrency", String(comparePoolWorkers)]
        } else if let concurrency {
            arguments += ["--concurrency", String(concurrency)]
        }
        if let socket { arguments += ["--socket", socket] }
        if let process { arguments += ["--process", process] }
        return arguments
    }

    private func runCompare() async throws {
        // Each child runs in a process group of its own (Foundation's Process puts it there), so a Ctrl-C
        // reaches only this process: it passes every signal on, and the child stops as a single run does.
        StopSignal.install()
        warnIfNobodyListens()
        var reports: [StressReport] = []
        for mode in [StressMode.spawn, .pool] {
            // Stopped: the runs not started yet are left out; the interrupted one reports what it did.
            if StopSignal.isRequested { break }
            if !quiet { Terminal.line("running \(mode.rawValue)...", to: STDERR_FILENO) }
            let arguments = childArguments(mode: mode)
            let output: String
            do {
                output = try await Task.detached { try Self.runChild(arguments) }.value
            } catch is CLIError where StopSignal.isRequested {
                // Signalled before it could set up its handler, the child died of it without a report.
                break
            }
            do {
                reports.append(try JSONDecoder().decode(StressReport.self, from: Data(output.utf8)))
            } catch {
                throw CLIError("the \(mode.rawValue) run printed no report: \(output)", status: 1)
            }
        }
        if reports.isEmpty { throw CLIError("stopped before a run ended", status: StopSignal.stoppedStatus) }
        if json {
            Terminal.line(try Self.encode(reports))
        } else {
            Terminal.line(StressReport.sideBySide(reports))
        }
    }

    /// Runs this executable again with `arguments` and returns its stdout.
    static func runChild(_ arguments: [String]) throws -> String {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        child.arguments = arguments
        let pipe = Pipe()
        child.standardOutput = pipe
        try child.run()
        if StopSignal.adopt(child.processIdentifier) { kill(child.processIdentifier, SIGTERM) }
        defer { StopSignal.release() }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        guard child.terminationStatus == 0 else {
            throw CLIError(
                "taskwatch \(arguments.joined(separator: " ")) exited with \(child.terminationStatus)", status: 1)
        }
        return String(decoding: data, as: UTF8.self)
    }
}
