import Benchmark
import CoreMetrics
import Prometheus
import SpawnPairs
import Synchronization
import TaskWatch
import TaskWatchMetrics

// Each pair runs in the same process with the same body: only the thing under test differs.
// `scripts/bench-client.sh` reads the exported results and prints the ratios.
//
// The spawn benchmarks come in two forms. `spawnRatio` is the one the ratio goal is judged by: each
// iteration runs one interleaved round of every pair in `SpawnPairs` (plain batch and monitored batch
// back to back, the order alternating) and records the round's ratio as a custom metric, in parts per
// thousand, so both sides share the machine's slow phases. The four `spawn*` benchmarks run each side
// on its own, one after the other: their wall-clock figures drift with the machine, but their malloc
// counts are exact and show what a monitored spawn adds. They start 1,000 tasks per iteration and
// await them all; `scaledIterations` is 1,000, so the reported figures are per task. The reporter runs (TaskWatch.start) during every
// benchmark here, as in a real process, connected to the daemon at TASKWATCH_SOCKET (the one that
// scripts/bench-client.sh starts).

let monitor = TaskMonitor("benchmark")

let benchmarks: @Sendable () -> Void = {
    TaskWatch.start()

    let spawnConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 20,
        scalingFactor: .kilo,
        maxDuration: .seconds(5),
        maxIterations: 4_000
    )

    let counterConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 10,
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: 200
    )

    let ratioMetrics = SpawnPairs.all.map {
        BenchmarkMetric.custom("ratio_permille_\($0.name)", useScalingFactor: false)
    }
    let ratioConfiguration = Benchmark.Configuration(
        metrics: ratioMetrics + [.throughput],
        warmupIterations: 10,
        scalingFactor: .one,
        maxDuration: .seconds(20),
        maxIterations: 1_000
    )

    Benchmark("spawnRatio", configuration: ratioConfiguration) { benchmark in
        // One state across iterations: the round number alternates the order of the sides.
        let batchSize = 200
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(batchSize)
        let baselineFirst = SpawnRatioState.nextRound() % 2 == 0
        for (pair, metric) in zip(SpawnPairs.all, ratioMetrics) {
            let (baseline, candidate) = await SpawnPairs.round(
                pair, batchSize: batchSize, baselineFirst: baselineFirst, into: &tasks)
            benchmark.measurement(metric, Int((Double(candidate) / Double(baseline) * 1_000).rounded()))
        }
    }

    Benchmark("spawnPlain", configuration: spawnConfiguration) { benchmark in
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(benchmark.scaledIterations.count)
        for index in benchmark.scaledIterations {
            tasks.append(Task.detached { index })
        }
        for task in tasks { blackHole(await task.value) }
    }

    Benchmark("spawnMonitored", configuration: spawnConfiguration) { benchmark in
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(benchmark.scaledIterations.count)
        for index in benchmark.scaledIterations {
            tasks.append(monitor.detached { index })
        }
        for task in tasks { blackHole(await task.value) }
    }

    // The same pair through `Task {}` and `monitor.task {}`: the benchmark body is nonisolated, so both
    // run on the global executor, and the monitored spawn takes its no-hop path.
    Benchmark("spawnPlainTask", configuration: spawnConfiguration) { benchmark in
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(benchmark.scaledIterations.count)
        for index in benchmark.scaledIterations {
            tasks.append(Task { index })
        }
        for task in tasks { blackHole(await task.value) }
    }

    Benchmark("spawnMonitoredTask", configuration: spawnConfiguration) { benchmark in
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(benchmark.scaledIterations.count)
        for index in benchmark.scaledIterations {
            tasks.append(monitor.task { index })
        }
        for task in tasks { blackHole(await task.value) }
    }

    // The allocation-free form: the counting inside the spawned closure, under a ticket.
    Benchmark("spawnTicketTask", configuration: spawnConfiguration) { benchmark in
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(benchmark.scaledIterations.count)
        for index in benchmark.scaledIterations {
            let ticket = monitor.ticket()
            tasks.append(Task { await ticket.run { index } })
        }
        for task in tasks { blackHole(await task.value) }
    }

    // The swift-metrics `CounterHandler.increment(by:)` path of each backend, the handler made once.
    let ours = TaskWatchMetricsFactory().makeCounter(label: "bench_requests_total", dimensions: [("route", "/")])
    let prometheus = PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())
        .makeCounter(label: "bench_requests_total", dimensions: [("route", "/")])

    Benchmark("counterIncrementTaskWatch", configuration: counterConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { ours.increment(by: 1) }
    }

    Benchmark("counterIncrementPrometheus", configuration: counterConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { prometheus.increment(by: 1) }
    }

    // The `MeterHandler.set(_:)` path (a swift-metrics `Gauge`/`Meter`), a new value every call: ours
    // checks for a change and whether the reporter has backed off.
    let ourGauge = TaskWatchMetricsFactory().makeMeter(label: "bench_in_flight", dimensions: [("route", "/")])
    let prometheusGauge = PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())
        .makeMeter(label: "bench_in_flight", dimensions: [("route", "/")])

    Benchmark("gaugeSetTaskWatch", configuration: counterConfiguration) { benchmark in
        for index in benchmark.scaledIterations { ourGauge.set(Double(index)) }
    }

    Benchmark("gaugeSetPrometheus", configuration: counterConfiguration) { benchmark in
        for index in benchmark.scaledIterations { prometheusGauge.set(Double(index)) }
    }
}

/// The round counter of `spawnRatio`, so consecutive iterations alternate which side runs first.
enum SpawnRatioState {
    static let rounds = Atomic<Int>(0)

    static func nextRound() -> Int { rounds.wrappingAdd(1, ordering: .relaxed).oldValue }
}
