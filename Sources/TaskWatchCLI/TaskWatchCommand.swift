import ArgumentParser

/// The `taskwatch` command-line tool.
public struct TaskWatchCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "taskwatch",
        abstract: "Stress, leak and inspect Swift concurrency tasks reported to taskwatchd.",
        subcommands: [
            StressCommand.self, LeakCommand.self, TopCommand.self, CheckCommand.self, SendCommand.self,
        ]
    )

    public init() {}
}
