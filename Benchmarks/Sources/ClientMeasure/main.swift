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
//   spawnload N                     N tasks spawned and completed in batches of 1,000; elapsed
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
case "spawnload":
    guard let count = argument(1), count > 0 else { usage() }
    TaskWatch.start()
    print(await Task.detached { await Measure.spawnload(count) }.value)
case "spawn-ab":
    guard let rounds = argument(1), let size = argument(2), rounds > 1, size > 1 else { usage() }
    TaskWatch.start()
    print(await Task.detached { await SpawnAB.run(rounds: rounds, batchSize: size) }.value)
case "spawn-one":
    guard let kind = SpawnAB.Kind(rawValue: arguments.count > 1 ? arguments[1] : ""), let rounds = argument(2), let size = argument(3) else { usage() }
    TaskWatch.start()
    print(await Task.detached { () async -> UInt64 in
        var tasks: [Task<Int, Never>] = []
        var total: UInt64 = 0
        for _ in 0..<rounds { total += await SpawnAB.batch(kind, size, into: &tasks) }
        return total / UInt64(rounds * size)
    }.value)
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
        "usage: ClientMeasure idle-cpu SECONDS [--baseline] | wake-floor PERIOD_US SECONDS | spawnload N | burst N HOLD_MS PORT\n"
            .utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}
