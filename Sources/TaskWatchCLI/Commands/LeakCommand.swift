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

    @Argument(help: "stream, request, heartbeat, continuation, retry or group.")
    var scenario: LeakScenario

    @Flag(help: "Run the same workload with the leak fixed: live tasks stay flat.")
    var fixed = false

    @Option(help: "Requests (or sessions) per second.")
    var rate: Double = 10

    @Option(help: "Stop after this long, e.g. 30s (default: run until stopped).")
    var duration: String?

    @Option(help: "The process label (default: TASKWATCH_PROCESS, else taskwatch-leak).")
    var process: String?

    @Option(help: "Ingest socket path (default: TASKWATCH_SOCKET, else the daemon's default).")
    var socket: String?

    func validate() throws {
        if !(rate > 0 && rate <= 100_000) { throw ValidationError("--rate must be above 0 and at most 100000") }
    }

    func run() async throws {
        let durationNanoseconds: UInt64?
        do {
            durationNanoseconds = try duration.map { try parseDuration($0, flag: "duration") }
        } catch let error as CLIError {
            Terminal.line("taskwatch leak: \(error.description)", to: STDERR_FILENO)
            throw ExitCode(error.status)
        }
        StopSignal.install()
        var configuration = Configuration()
        if let socket { configuration.socketPath = socket }
        configuration.processName =
            process ?? Environment.variables()["TASKWATCH_PROCESS"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "taskwatch-leak"
        TaskWatch.start(configuration)
        Terminal.line(
            "taskwatch leak \(scenario.rawValue)\(fixed ? " --fixed" : ""): \(scenario.summary); "
                + "\(Format.count(rate)) requests/s, reporting to \(configuration.socketPath) as "
                + "\(configuration.processName), series swift_tasks{task=\"\(scenario.rawValue)\"}")
        let runner = LeakRunner(scenario: scenario, fixed: fixed, rate: rate, durationNanoseconds: durationNanoseconds)
        await Task.detached { await runner.run() }.value
        try? await Task.sleep(for: Profile.reportInterval * 3)
    }
}
