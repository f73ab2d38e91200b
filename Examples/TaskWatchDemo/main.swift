import Foundation
import TaskWatch
import TaskWatchMetrics

// A small server-like workload that TaskWatch makes visible. Runs until SIGINT or SIGTERM.
let options: Options
do {
    options = try Options(
        arguments: Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
} catch {
    // Asked for: the usage goes to stdout and the demo succeeds, like any --help.
    if error.isHelp {
        say(error.message)
        exit(0)
    }
    FileHandle.standardError.write(Data((error.message + "\n").utf8))
    exit(2)
}

installStopHandlers()
if let count = options.benchmark {
    await Task.detached { await benchmark(count: count) }.value
    exit(0)
}

TaskWatchMetrics.bootstrap()
let configuration = Configuration()
TaskWatch.start(configuration)
say(
    "TaskWatchDemo: \(options.rate) requests/s, leak every \(options.leakEvery), profile \(Profile.name), "
        + "reporting to \(configuration.socketPath) as \(configuration.processName)")

let workload = Workload(options: options)
await Task.detached { await workload.run() }.value
for monitor in [workload.requests, workload.backends, workload.heartbeat] {
    let snapshot = monitor.snapshot()
    say("\(monitor.name): created \(snapshot.created), live \(snapshot.live)")
}
