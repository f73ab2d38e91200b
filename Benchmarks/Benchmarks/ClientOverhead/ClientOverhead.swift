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

    // A benchmark whose iterations are interleaved rounds records each round's ratio, in parts per
    // thousand, as one custom metric per pair.
    func ratioMetrics(_ names: [String]) -> [BenchmarkMetric] {
        names.map { BenchmarkMetric.custom("ratio_permille_\($0)", useScalingFactor: false) }
    }
    func ratioConfiguration(_ metrics: [BenchmarkMetric]) -> Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: metrics + [.throughput],
            warmupIterations: 10,
            scalingFactor: .one,
            maxDuration: .seconds(20),
            maxIterations: 1_000
        )
    }
    let spawnRatioMetrics = ratioMetrics(SpawnPairs.all.map(\.name))

    Benchmark("spawnRatio", configuration: ratioConfiguration(spawnRatioMetrics)) { benchmark in
        // One state across iterations: the round number alternates the order of the sides.
        let batchSize = 200
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(batchSize)
        let baselineFirst = spawnRounds.next() % 2 == 0
        for (pair, metric) in zip(SpawnPairs.all, spawnRatioMetrics) {
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

    // The ratios the comparison is judged by: each iteration runs 100,000 operations on each backend back
    // to back, the order alternating, and records ours / swift-prometheus in parts per thousand. The
    // four benchmarks above run each side in its own window, one after the other, in a fixed order, so
    // their p50s compare two moments of the machine as much as two backends.
    let metricsRatioMetrics = ratioMetrics(["counter", "gauge"])
    Benchmark("metricsRatio", configuration: ratioConfiguration(metricsRatioMetrics)) { benchmark in
        let operations = 100_000
        let oursFirst = metricsRounds.next() % 2 == 0
        func time(_ body: () -> Void) -> UInt64 {
            let start = SpawnPairs.now()
            body()
            return SpawnPairs.now() - start
        }
        let counterOurs = { for _ in 0..<operations { ours.increment(by: 1) } }
        let counterTheirs = { for _ in 0..<operations { prometheus.increment(by: 1) } }
        let gaugeOurs = { for index in 0..<operations { ourGauge.set(Double(index)) } }
        let gaugeTheirs = { for index in 0..<operations { prometheusGauge.set(Double(index)) } }
        for (metric, (oursBody, theirsBody)) in zip(
            metricsRatioMetrics, [(counterOurs, counterTheirs), (gaugeOurs, gaugeTheirs)])
        {
            let oursTime: UInt64
            let theirsTime: UInt64
            if oursFirst {
                oursTime = time(oursBody)
                theirsTime = time(theirsBody)
            } else {
                theirsTime = time(theirsBody)
                oursTime = time(oursBody)
            }
            benchmark.measurement(metric, Int((Double(oursTime) / Double(theirsTime) * 1_000).rounded()))
        }
    }
}

/// The round counter of an interleaved benchmark, so consecutive iterations alternate which side runs
/// first.
final class RoundCounter: Sendable {
    private let rounds = Atomic<Int>(0)

    func next() -> Int { rounds.wrappingAdd(1, ordering: .relaxed).oldValue }
}

let spawnRounds = RoundCounter()
let metricsRounds = RoundCounter()
