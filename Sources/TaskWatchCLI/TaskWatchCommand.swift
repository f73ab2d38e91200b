import ArgumentParser

/// The `taskwatch` command-line tool.
public struct TaskWatchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "taskwatch",
        abstract: "Stress, leak and inspect Swift concurrency tasks reported to taskwatchd.",
        subcommands: [SendCommand.self]
    )

    public init() {}
}
