// swift-tools-version: 6.1
// libFuzzer targets. A package of its own so the root's `swift build` never sees executables without
// a `main`. The daemon's targets are reached through symlinks in Shared/ (the root exports them as no
// product), so both manifests compile the very same sources. Build with
// `swift build -c release --sanitize fuzzer --product NAME --scratch-path .build-fuzz` (see the Makefile).
import PackageDescription

let package = Package(
    name: "TaskWatchFuzz",
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .target(name: "TaskWatchWire", path: "Shared/TaskWatchWire"),
        .target(name: "CTaskWatchSocket", path: "Shared/CTaskWatchSocket"),
        .target(name: "CTaskWatchCrypt", path: "Shared/CTaskWatchCrypt", linkerSettings: [.linkedLibrary("crypt")]),
        .systemLibrary(name: "CMicroHTTPD", path: "Shared/CMicroHTTPD", pkgConfig: "libmicrohttpd"),
        .systemLibrary(name: "CZlib", path: "Shared/CZlib", pkgConfig: "zlib"),
        .target(
            name: "TaskWatchDaemon",
            dependencies: [
                "TaskWatchWire", "CTaskWatchSocket", "CMicroHTTPD", "CZlib", "CTaskWatchCrypt",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Shared/TaskWatchDaemon"
        ),
        .executableTarget(name: "FuzzFrameDecoder", dependencies: ["TaskWatchDaemon", "TaskWatchWire"]),
        .executableTarget(name: "FuzzHTTPHeaders", dependencies: ["TaskWatchDaemon"]),
    ]
)
