import Foundation

/// The path of the built executable `name` (`taskwatchd`, `taskwatch`, `TaskWatchProbe`): in
/// `TASKWATCH_BIN_DIR` when set (as `make test` does), else in the nearest folder above the test bundle
/// that holds it, else in this checkout's `.build/debug`.
public func builtExecutable(_ name: String) -> String {
    if let explicit = ProcessInfo.processInfo.environment["TASKWATCH_BIN_DIR"], !explicit.isEmpty {
        return URL(fileURLWithPath: explicit).appendingPathComponent(name).path
    }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        let candidate = url.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return checkout.appendingPathComponent(".build/debug/\(name)").path
}
