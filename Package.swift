// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "TaskWatch",
    products: [
        .library(name: "TaskWatch", targets: ["TaskWatch"]),
        .library(name: "TaskWatchMetrics", targets: ["TaskWatchMetrics"]),
        .executable(name: "taskwatchd", targets: ["taskwatchd"]),
        .executable(name: "taskwatch", targets: ["taskwatch"]),
    ],
    traits: [
        .trait(
            name: "Stress",
            description: "Report every 1 ms, time every task lifetime, probe the executor every 10 ms."
        ),
        .trait(
            name: "Silent",
            description: "Instrumentation compiles away: a spawn is a plain Task and nothing is reported."
        ),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // The wire format: pure Swift, no I/O. Both sides depend on it.
        .target(name: "TaskWatchWire"),

        // C shims. Each exists because Glibc's Swift overlay lacks the symbol or macro.
        .target(name: "CTaskWatchSocket"),
        .target(name: "CTaskWatchRuntime"),
        // bcrypt verification through libxcrypt's crypt_r, for basic auth.
        .target(name: "CTaskWatchCrypt", linkerSettings: [.linkedLibrary("crypt")]),
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // The daemon as a library, so tests reach its logic; `taskwatchd` is a thin shell over it.
        .target(
            name: "TaskWatchDaemon",
            dependencies: [
                "TaskWatchWire",
                "CTaskWatchSocket",
                "CMicroHTTPD",
                "CZlib",
                "CTaskWatchCrypt",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "taskwatchd",
            dependencies: [
                "TaskWatchDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The client library linked into instrumented processes.
        .target(
            name: "TaskWatch",
            dependencies: ["TaskWatchWire", "CTaskWatchRuntime", "CTaskWatchSocket"],
            swiftSettings: [
                .define("TASKWATCH_STRESS", .when(traits: ["Stress"])),
                .define("TASKWATCH_SILENT", .when(traits: ["Silent"])),
            ]
        ),
        .target(
            name: "TaskWatchMetrics",
            dependencies: [
                "TaskWatch",
                "TaskWatchWire",
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // The command-line tool as a library plus a thin executable.
        .target(
            name: "TaskWatchCLI",
            dependencies: [
                "TaskWatch",
                "TaskWatchMetrics",
                "TaskWatchWire",
                "CTaskWatchSocket",
                "CTaskWatchRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(name: "taskwatch", dependencies: ["TaskWatchCLI"]),

        // A server-like workload to watch; an example, not a product.
        .executableTarget(
            name: "TaskWatchDemo",
            dependencies: [
                "TaskWatch",
                "TaskWatchMetrics",
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Examples/TaskWatchDemo"
        ),

        // The child process the client end-to-end tests start: not a product.
        .executableTarget(
            name: "TaskWatchProbe",
            dependencies: ["TaskWatch", "TaskWatchWire"],
            path: "Tests/Fixtures/TaskWatchProbe"
        ),

        // Helpers the test targets share: child processes, scratch directories, polling, a real daemon,
        // HTTP through curl, exposition parsing and validation. Not a product.
        .target(
            name: "TaskWatchTestSupport", dependencies: ["TaskWatchWire", "CTaskWatchSocket"],
            path: "Tests/TaskWatchTestSupport"),

        .testTarget(name: "TaskWatchWireTests", dependencies: ["TaskWatchWire"]),
        .testTarget(
            name: "TaskWatchDaemonTests",
            dependencies: ["TaskWatchDaemon", "TaskWatchTestSupport", "CTaskWatchRuntime"]),
        // Starts the built `taskwatchd` and `taskwatch` binaries; `make test` builds them first.
        .testTarget(
            name: "TaskWatchEndToEndTests",
            dependencies: ["TaskWatchWire", "CTaskWatchSocket", "TaskWatchCLI", "TaskWatchTestSupport"]),
        // Starts the built `taskwatchd` and `TaskWatchProbe` binaries: the client proven against the daemon.
        .testTarget(
            name: "TaskWatchClientEndToEndTests",
            dependencies: ["TaskWatchWire", "CTaskWatchSocket", "TaskWatchTestSupport"],
            swiftSettings: [
                .define("TASKWATCH_STRESS", .when(traits: ["Stress"])),
                .define("TASKWATCH_SILENT", .when(traits: ["Silent"])),
            ]
        ),
        .testTarget(
            name: "TaskWatchIngestTests",
            dependencies: ["TaskWatchDaemon", "TaskWatchWire", "CTaskWatchSocket", "TaskWatchTestSupport"]
        ),
        .testTarget(
            name: "TaskWatchTests",
            dependencies: [
                "TaskWatch", "TaskWatchWire", "CTaskWatchSocket", "CTaskWatchRuntime", "TaskWatchTestSupport",
            ],
            swiftSettings: [
                .define("TASKWATCH_STRESS", .when(traits: ["Stress"])),
                .define("TASKWATCH_SILENT", .when(traits: ["Silent"])),
            ]
        ),
        .testTarget(
            name: "TaskWatchMetricsTests",
            dependencies: [
                "TaskWatchMetrics", "TaskWatch", "TaskWatchWire", "CTaskWatchSocket", "TaskWatchTestSupport",
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: [
                .define("TASKWATCH_STRESS", .when(traits: ["Stress"])),
                .define("TASKWATCH_SILENT", .when(traits: ["Silent"])),
            ]
        ),
        .testTarget(
            name: "TaskWatchHardeningTests",
            dependencies: [
                "TaskWatchDaemon", "TaskWatchWire", "CTaskWatchSocket", "CTaskWatchCrypt", "TaskWatchTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
