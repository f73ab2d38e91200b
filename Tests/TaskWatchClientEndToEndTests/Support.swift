import Foundation
import TaskWatchTestSupport

extension DaemonProcess {
    /// A daemon for the probe: peaks are kept 15 s, so a burst's peak is still there when it is polled.
    static func forProbe(directory: ScratchDirectory = ScratchDirectory()) throws -> DaemonProcess {
        try DaemonProcess(arguments: ["--peak.window", "15s"], directory: directory)
    }
}

struct ProbeFailure: Error, CustomStringConvertible {
    let description: String
}

/// A `TaskWatchProbe` child reporting to `socket` as process `probe`. Its JSON lines go to a file the
/// test polls; it keeps reporting until its standard input is closed.
final class ProbeProcess {
    let process = Process()
    let stdin = Pipe()
    let outputFile: URL
    let errorFile: URL
    private let directory = ScratchDirectory()

    init(socket: String, arguments: [String], environment extra: [String: String] = [:]) throws {
        outputFile = URL(fileURLWithPath: directory.file("probe.out"))
        errorFile = URL(fileURLWithPath: directory.file("probe.err"))
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: builtExecutable("TaskWatchProbe"))
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["TASKWATCH_SOCKET"] = socket
        environment["TASKWATCH_PROCESS"] = "probe"
        environment.removeValue(forKey: "TASKWATCH_DISABLED")
        environment.removeValue(forKey: "TASKWATCH_INTERVAL")
        environment.merge(extra) { $1 }
        process.environment = environment
        // Close-on-exec, so that a daemon started later does not inherit it: the probe must see its
        // standard input end when `finish()` closes this end.
        _ = fcntl(stdin.fileHandleForWriting.fileDescriptor, F_SETFD, FD_CLOEXEC)
        process.standardInput = stdin
        process.standardOutput = try FileHandle(forWritingTo: outputFile)
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// What the probe wrote to its standard error so far.
    var errorOutput: String { (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "" }

    /// The labels that pick this probe's task series.
    var taskLabels: [String: String] { ["process": "probe", "pid": "\(pid)", "task": "probe"] }
    var processLabels: [String: String] { ["process": "probe", "pid": "\(pid)"] }

    /// Sends one line to the probe (its trigger).
    func trigger() {
        stdin.fileHandleForWriting.write(Data("go\n".utf8))
    }

    /// The first JSON line printed that has `key`, waiting up to `seconds`.
    func json(with key: String, seconds: Double = 60) throws -> [String: Double] {
        var found: [String: Double]?
        _ = eventually(timeout: .seconds(seconds)) {
            let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    object[key] != nil
                else { continue }
                found = object.compactMapValues { ($0 as? NSNumber)?.doubleValue }
                return true
            }
            return !process.isRunning
        }
        guard let found else { throw ProbeFailure(description: "the probe printed no \(key) within \(seconds) s") }
        return found
    }

    /// Closes the probe's standard input and waits for it to exit; its exit status.
    @discardableResult
    func finish() -> Int32 {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
