import Foundation
import Testing

// A copy of the few helpers of TaskWatchEndToEndTests/Support.swift this suite needs, plus the probe.

/// Where the built executables are: `TASKWATCH_BIN_DIR` (set by `make test`), else beside the test bundle.
let binDirectory: URL = {
    if let explicit = ProcessInfo.processInfo.environment["TASKWATCH_BIN_DIR"], !explicit.isEmpty {
        return URL(fileURLWithPath: explicit)
    }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("TaskWatchProbe").path) {
            return url
        }
    }
    return URL(fileURLWithPath: ".build/debug")
}()

/// A short temporary directory: socket paths must fit in 108 bytes.
func temporaryDirectory() -> URL {
    let path = "/tmp/tw-cp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return URL(fileURLWithPath: path)
}

/// A port nobody listens on right now.
func freePort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// GET `url` with curl (loopback only); the body, or nil when the request failed.
func fetchBody(_ url: String) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["curl", "-s", "-f", "--max-time", "5", url]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
}

/// One sample of an exposition: name, labels and value.
struct Sample {
    var name: String
    var labels: [String: String]
    var value: Double
}

extension Sample {
    /// Whether this sample is named `name` and carries every label of `labels`.
    func matches(_ name: String, _ labels: [String: String]) -> Bool {
        self.name == name && labels.allSatisfy { self.labels[$0.key] == $0.value }
    }
}

/// Parses the text exposition format (no escaped quotes in the label values used here).
func parseSamples(_ text: String) -> [Sample] {
    var samples: [Sample] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            continue
        }
        let head = line[..<space]
        guard let brace = head.firstIndex(of: "{") else {
            samples.append(Sample(name: String(head), labels: [:], value: value))
            continue
        }
        var labels: [String: String] = [:]
        for pair in head[head.index(after: brace)..<head.index(before: head.endIndex)].split(separator: ",") {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            labels[String(pair[..<equals])] = String(pair[pair.index(after: equals)...].dropFirst().dropLast())
        }
        samples.append(Sample(name: String(head[..<brace]), labels: labels, value: value))
    }
    return samples
}

/// A real `taskwatchd` child on a temporary socket and a free loopback port.
final class DaemonProcess {
    let directory: URL
    let socketPath: String
    let port: UInt16
    let process = Process()
    private let ownsDirectory: Bool

    /// A daemon in `directory` (a fresh one by default, removed at deinit; a given one is kept, so a
    /// second daemon can take over the same socket path, as after a restart).
    init(directory: URL? = nil, port: UInt16 = freePort()) throws {
        ownsDirectory = directory == nil
        let directory = directory ?? temporaryDirectory()
        self.directory = directory
        self.port = port
        socketPath = directory.appendingPathComponent("ingest.sock").path
        let logFile = directory.appendingPathComponent("taskwatchd-\(UInt32.random(in: 0...UInt32.max)).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        process.executableURL = binDirectory.appendingPathComponent("taskwatchd")
        process.arguments = [
            "--ingest.socket", socketPath, "--web.listen-address", "127.0.0.1:\(port)", "--client.grace", "2s",
            "--peak.window", "15s",
        ]
        process.standardError = try FileHandle(forWritingTo: logFile)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        guard eventually(10, { fetchBody("http://127.0.0.1:\(port)/-/ready") != nil }) else {
            throw DaemonStartFailure(log: (try? String(contentsOf: logFile, encoding: .utf8)) ?? "")
        }
    }

    var pid: Int32 { process.processIdentifier }

    func samples() -> [Sample] { fetchBody("http://127.0.0.1:\(port)/metrics").map(parseSamples) ?? [] }

    /// The value of the series named `name` whose labels include `labels`, or nil.
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples().first { $0.matches(name, labels) }?.value
    }

    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    func stop(signal number: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, number)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        if ownsDirectory { try? FileManager.default.removeItem(at: directory) }
    }
}

struct DaemonStartFailure: Error, CustomStringConvertible {
    let log: String
    var description: String { "taskwatchd did not become ready:\n\(log)" }
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
    private let directory = temporaryDirectory()

    init(socket: String, arguments: [String]) throws {
        outputFile = directory.appendingPathComponent("probe.out")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        process.executableURL = binDirectory.appendingPathComponent("TaskWatchProbe")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["TASKWATCH_SOCKET"] = socket
        environment["TASKWATCH_PROCESS"] = "probe"
        environment.removeValue(forKey: "TASKWATCH_DISABLED")
        environment.removeValue(forKey: "TASKWATCH_INTERVAL")
        process.environment = environment
        process.standardInput = stdin
        process.standardOutput = try FileHandle(forWritingTo: outputFile)
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

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
        _ = eventually(seconds) {
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
        try? FileManager.default.removeItem(at: directory)
    }
}
