import SpawnPairs
import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

// Whole-process measurements for scripts/bench-client.sh. Each prints one JSON line.
//
//   idle-cpu SECONDS [--baseline]   CPU of this process over an idle period, TaskWatch started unless
//                                   --baseline
//   wake-floor PERIOD_US SECONDS    CPU of a bare thread that only sleeps to a deadline every PERIOD_US:
//                                   the floor under any reporter waking that often
//   never-blocks DAEMON CYCLES N    N-task rounds with the daemon healthy, stopped, absent and killed
//                                   mid-round, each paired with a matched healthy round; this process
//                                   starts DAEMON itself, and a bystander one (NeverBlocks)
//   spawn-ab ROUNDS BATCH [--high]  plain against monitored spawns, interleaved rounds (SpawnPairs)
//   capture-ab ROUNDS               captured bytes against counting, interleaved rounds (CaptureCost)
//   cancel-read ROUNDS              ns per cancellation read: `Task.isCancelled` against the runtime
//                                   entry points the library calls, interleaved rounds (CaptureCost)
//   busy-monitors N SECONDS         the reporter thread's CPU while N monitors all keep spawning
//   burst N HOLD_MS PORT            N tasks alive together for HOLD_MS while a thread polls the daemon's
//                                   /metrics on 127.0.0.1:PORT: when the burst shows, and its peak
//
// The daemon is found through TASKWATCH_SOCKET. Workloads run in `Task.detached`: a `Task {}` here in
// main.swift would inherit the main actor.

let arguments = Array(CommandLine.arguments.dropFirst())
func argument(_ index: Int) -> Int? { arguments.count > index ? Int(arguments[index]) : nil }

switch arguments.first {
case "idle-cpu":
    guard let seconds = argument(1), seconds > 0 else { usage() }
    print(Measure.idleCPU(seconds: seconds, startReporter: !arguments.contains("--baseline")))
case "wake-floor":
    guard let period = argument(1), let seconds = argument(2), period > 0, seconds > 0 else { usage() }
    print(Measure.wakeFloor(periodMicroseconds: period, seconds: seconds))
case "spawn-ab":
    guard let rounds = argument(1), let size = argument(2), rounds >= 4, size > 1 else { usage() }
    TaskWatch.start()
    // --high: from a high-priority task, as the ordo-one runner's user-initiated queue does.
    let priority: TaskPriority? = arguments.contains("--high") ? .high : nil
    print(await Task.detached(priority: priority) { await SpawnPairs.run(rounds: rounds, batchSize: size) }.value)
case "capture-ab":
    guard let rounds = argument(1), rounds >= 4 else { usage() }
    TaskWatch.start()
    print(await Task.detached { await CaptureCost.run(rounds: rounds) }.value)
case "cancel-read":
    guard let rounds = argument(1), rounds >= 4 else { usage() }
    print(await Task.detached { CaptureCost.cancelRead(rounds: rounds) }.value)
case "never-blocks":
    guard arguments.count > 1, let cycles = argument(2), let tasks = argument(3), cycles > 0, tasks > 0 else { usage() }
    let daemon = arguments[1]
    print(await Task.detached { await NeverBlocks.run(daemonPath: daemon, cycles: cycles, tasks: tasks) }.value)
case "busy-monitors":
    guard let monitors = argument(1), let seconds = argument(2), monitors > 0, seconds > 0 else { usage() }
    print(await Task.detached { await Measure.busyMonitors(monitors, seconds: seconds) }.value)
case "burst":
    guard let count = argument(1), let hold = argument(2), let port = argument(3), count > 0 else { usage() }
    TaskWatch.start()
    print(await Task.detached { await Measure.burst(count, holdMilliseconds: hold, port: UInt16(port)) }.value)
default:
    usage()
}
exit(0)

func usage() -> Never {
    let bytes = Array(
        "usage: ClientMeasure idle-cpu SECONDS [--baseline] | wake-floor PERIOD_US SECONDS | spawn-ab ROUNDS BATCH [--high] | capture-ab ROUNDS | cancel-read ROUNDS | never-blocks DAEMON CYCLES N | busy-monitors N SECONDS | burst N HOLD_MS PORT\n"
            .utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}
