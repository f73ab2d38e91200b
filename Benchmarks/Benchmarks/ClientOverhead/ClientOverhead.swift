import Benchmark
import CoreMetrics
import Prometheus
import TaskWatch
import TaskWatchMetrics

// Each pair runs in the same process, one after the other, with the same body: only the thing under
// test differs. `scripts/bench-client.sh` reads the exported results and prints the ratios.
//
// The spawn benchmarks start 1,000 tasks per iteration and await them all; `scaledIterations` is
// 1,000, so the reported figures are per task. The reporter runs (TaskWatch.start) during every
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
}
