import ArgumentParser
import Glibc
import TaskWatch

extension LeakScenario: ExpressibleByArgument {}

/// `taskwatch leak SCENARIO`: reproduces a task leak while reporting to taskwatchd.
struct LeakCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leak",
        abstract: "Reproduce a Swift task leak (or, with --fixed, its fix) while reporting to taskwatchd.",
        discussion: """
            Scenarios: \(LeakScenario.allCases.map { "\($0.rawValue): \($0.summary)" }.joined(separator: "; ")). \
            The monitor is named after the scenario: watch swift_tasks{task="SCENARIO"}. Runs until \
            SIGINT or SIGTERM, or for --duration. See docs/leaks.md.
            """
    )

    @Argument(help: "The leak to reproduce (see the list above).")
    var scenario: LeakScenario

    @Flag(help: "Run the same workload with the leak fixed: live tasks stay flat.")
    var fixed = false

    // Unconditional, so `--rate -1` reaches validate() instead of reading as an unknown option.
    @Option(parsing: .unconditional, help: "Requests (or sessions) per second.")
    var rate: Double = 10

    @Option(parsing: .unconditional, help: "Stop after this long, e.g. 30s (default: run until stopped).")
    var duration: DurationArgument?

    @Option(help: "The process label (default: $TASKWATCH_PROCESS, else taskwatch-leak).")
    var process: String?

    @Option(help: socketHelp)
    var socket: String?

    func validate() throws {
        // At most 1,000 s between requests: the interval is kept in nanoseconds as an integer.
        if !(rate >= 0.001 && rate <= 100_000) { throw ValidationError("--rate must be from 0.001 to 100000") }
        try validateSocketOption(socket)
        try validateProcessOption(process)
    }

    func run() async throws {
        StopSignal.install()
        var configuration = Configuration()
        if let socket { configuration.socketPath = socket }
        configuration.processName =
            process ?? Environment.variables()["TASKWATCH_PROCESS"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "taskwatch-leak"
        // The leak's final counts stay on /metrics for the daemon's grace period, as stress's do.
        configuration.saysGoodbyeAtExit = false
        let disabled = Instrumentation.disabledReason(configuration)
        if disabled == nil, let warning = IngestSocket.warning(configuration.socketPath) {
            Terminal.line(warning, to: STDERR_FILENO)
        }
        TaskWatch.start(configuration)
        let reporting =
            disabled.map { "\($0): nothing is counted or reported" }
            ?? "reporting to \(configuration.socketPath) as \(configuration.processName), series "
            + "swift_tasks{task=\"\(scenario.rawValue)\"}"
        Terminal.line(
            "taskwatch leak \(scenario.rawValue)\(fixed ? " --fixed" : ""): \(scenario.summary); "
                + "\(Format.count(rate)) requests/s, \(reporting)")
        let runner = LeakRunner(
            scenario: scenario, fixed: fixed, rate: rate, durationNanoseconds: duration?.nanoseconds,
            counted: disabled == nil)
        await Task.detached { await runner.run() }.value
        Instrumentation.sendFinalReport()
    }
}
