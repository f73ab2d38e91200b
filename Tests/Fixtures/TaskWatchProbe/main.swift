import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

// A child process for the end-to-end tests: runs one workload through TaskWatch against the daemon at
// `TASKWATCH_SOCKET`, prints one JSON line with what it saw in-process, then keeps reporting until its
// standard input ends (bounded) so the test can read the daemon's view while the process is alive.
//
//   exact N               N tasks of each kind: success, throw, cancelled, group child, detached
//   tickets N             the same kinds, each counted through a TaskTicket instead of a wrapper
//   spawners S M          S concurrent spawners, M tasks each
//   burst N HOLD_MS       after a line on stdin, N tasks alive together for HOLD_MS
//   spawnload N [--trigger]  N tasks spawned and completed in batches; elapsed nanoseconds. With
//                         --trigger, it starts after a line on stdin
//   monitors N            N monitors with one finished task each (a report larger than the socket buffer)
//   retire N              N gauges `probe_item{item="0"…}` of value 7 through a ReportSource; after
//                         a line on stdin, every one retired but `item="0"`
//   names N               a monitor named N bytes of `x` and one named "", each with one finished task
//   fork N                forks N children one after another, each of which exits at once with exit(0)
//                         (running the exit handlers); prints the last one's status and how long its
//                         exit took
//
// With --no-goodbye, a normal exit does not send the goodbye (`Configuration.saysGoodbyeAtExit`).
//
// Workloads run in `Task.detached`: a `Task {}` in main.swift would inherit the main actor.

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first, let count = arguments.dropFirst().first.flatMap({ Int($0) }), count > 0 else {
    Probe.fail(
        "usage: TaskWatchProbe exact N | tickets N | spawners S M | burst N HOLD_MS | spawnload N [--trigger] | monitors N | retire N | names N | fork N"
    )
}
let extra = arguments.dropFirst(2).first.flatMap { Int($0) }

var configuration = Configuration()
// A normal exit without the goodbye: the daemon keeps the series through its grace period.
if arguments.contains("--no-goodbye") { configuration.saysGoodbyeAtExit = false }
TaskWatch.start(configuration)
// Registers the monitor now, so the daemon shows its zero series before any workload starts.
_ = Probe.monitor

let report: String
switch command {
case "exact":
    report = await Task.detached { await Probe.exact(count) }.value
case "tickets":
    report = await Task.detached { await Probe.tickets(count) }.value
case "spawners":
    report = await Task.detached { await Probe.spawners(count, tasksEach: extra ?? 1) }.value
case "burst":
    // The trigger is read here, on the main thread, so no pool thread blocks on it.
    _ = readLine()
    report = await Task.detached { await Probe.burst(count, holdMilliseconds: extra ?? 200) }.value
case "spawnload":
    if arguments.contains("--trigger") { _ = readLine() }
    report = await Task.detached { await Probe.spawnload(count) }.value
case "monitors":
    report = await Task.detached { await Probe.monitors(count) }.value
case "names":
    report = await Task.detached { await Probe.names(count) }.value
case "fork":
    report = Probe.forkAndExit(count)
case "retire":
    let items = ProbeItems(count)
    _ = readLine()
    items.retireAllButTheFirst()
    report = "{\"retired\":\(count - 1)}"
default:
    Probe.fail("TaskWatchProbe: unknown command \(command)")
}
Probe.emit(report)
Probe.lingerUntilStdinEnds(maximumSeconds: 60)
exit(0)
