// swift-tools-version: 6.1
import PackageDescription

// The client's benchmarks, in their own package so that ordo-one/benchmark and swift-prometheus never
// reach TaskWatch's users. `scripts/bench-client.sh` runs everything here.
let package = Package(
    name: "TaskWatchBenchmarks",
    platforms: [.macOS(.v15)],
    traits: [
        .trait(name: "Stress", description: "Build TaskWatch with its Stress trait (1 ms reports)."),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(
            name: "TaskWatch",
            path: "..",
            traits: [.defaults, .trait(name: "Stress", condition: .when(traits: ["Stress"]))]
        ),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.0.0", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
    ],
    targets: [
        // ordo-one/benchmark suite: spawn cost and counter increment, each side by side with its baseline.
        .executableTarget(
            name: "ClientOverhead",
            dependencies: [
                "SpawnPairs",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "TaskWatch", package: "TaskWatch"),
                .product(name: "TaskWatchMetrics", package: "TaskWatch"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Benchmarks/ClientOverhead",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Whole-process measurements that a per-iteration harness cannot make: the reporter's CPU over
        // an idle period, spawn-heavy elapsed time against a healthy, absent or stopped daemon, and how
        // fast and how fully a burst shows on the daemon's /metrics.
        .executableTarget(
            name: "ClientMeasure",
            dependencies: ["SpawnPairs", .product(name: "TaskWatch", package: "TaskWatch")]
        ),
        // Plain against monitored spawns in interleaved rounds, shared by both executables above.
        .target(
            name: "SpawnPairs",
            dependencies: [.product(name: "TaskWatch", package: "TaskWatch")]
        ),
    ]
)
