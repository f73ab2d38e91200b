import TaskWatchCLI

/// The `taskwatch` executable. An `@main` type rather than `main.swift`, so the asynchronous
/// `AsyncParsableCommand.main()` is the one that runs.
@main
enum Entry {
    static func main() async {
        await TaskWatchCommand.main()
    }
}
