import Foundation
import Glibc
import Testing

/// Where the built `taskwatchd` and `taskwatch` are: `TASKWATCH_BIN_DIR` (set by `make test-swift`),
/// else this checkout's debug build.
func binary(_ name: String) -> String {
    if let directory = ProcessInfo.processInfo.environment["TASKWATCH_BIN_DIR"] { return directory + "/" + name }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/\(name)").path
}

/// A private directory under /tmp with a short path (sun_path holds 108 bytes), removed at the end.
final class ScratchDirectory: Sendable {
    let path: String

    init(mode: mode_t = 0o700) {
        var template = Array("/tmp/twh.XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "mkdtemp failed")
        path = String(cString: created!)
        chmod(path, mode)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The outcome of a subprocess that ran to completion.
struct ProcessResult {
    var status: Int32
    var output: String
    var errorOutput: String
}

/// Runs a program to completion, its standard error in a file so no pipe can fill and stall it.
func runProcess(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    let errorURL = FileManager.default.temporaryDirectory.appendingPathComponent("twh-stderr-\(UUID())")
    _ = FileManager.default.createFile(atPath: errorURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errorURL) }
    process.standardError = try FileHandle(forWritingTo: errorURL)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let errorText = (try? String(contentsOf: errorURL, encoding: .utf8)) ?? ""
    return ProcessResult(
        status: process.terminationStatus, output: String(decoding: data, as: UTF8.self), errorOutput: errorText)
}

/// A long-running child whose standard error goes to a log file. Killed (SIGKILL) when released.
final class Child {
    let process = Process()
    let logPath: String

    init(_ executable: String, _ arguments: [String], log: String, environment: [String: String]? = nil) throws {
        logPath = log
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardError = handle
        process.standardOutput = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ signal: Int32) {
        if process.isRunning { kill(pid, signal) }
    }

    /// Waits up to `timeout` for the child to exit; returns its status, or nil if it is still running.
    func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    deinit {
        signal(SIGKILL)
        process.waitUntilExit()
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(15), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// The HTTP port a `taskwatchd` started with `--web.listen-address 127.0.0.1:0` logged.
func loggedPort(_ daemon: Child, timeout: Duration = .seconds(15)) -> UInt16? {
    var port: UInt16?
    _ = eventually(timeout: timeout) {
        guard let range = daemon.log.range(of: " ports=") else { return false }
        port = UInt16(daemon.log[range.upperBound...].prefix { $0.isNumber })
        return port != nil
    }
    return port
}

/// A response as curl saw it.
struct CurlResponse {
    var status: Int
    var headers: String
    var body: String
}

/// Requests `url` with curl; `-i` puts the status line and headers in front of the body.
func curl(_ url: String, _ extraArguments: [String] = []) throws -> CurlResponse {
    let result = try runProcess("/usr/bin/curl", ["-sS", "-i", "--max-time", "20"] + extraArguments + [url])
    guard result.status == 0, let split = result.output.range(of: "\r\n\r\n") else {
        return CurlResponse(status: 0, headers: result.errorOutput, body: "")
    }
    let head = String(result.output[..<split.lowerBound])
    let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return CurlResponse(status: status, headers: head, body: String(result.output[split.upperBound...]))
}

/// The value of the first sample whose line starts with `series` (name and, optionally, the opening
/// of its labels) and contains every string in `containing`.
func sample(_ body: String, _ series: String, containing: [String] = []) -> Double? {
    for line in body.split(separator: "\n") where line.hasPrefix(series) && !line.hasPrefix("#") {
        guard containing.allSatisfy({ line.contains($0) }) else { continue }
        if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return value }
    }
    return nil
}

/// A self-signed P-256 certificate for 127.0.0.1, made with openssl in `directory`.
func makeCertificate(in directory: ScratchDirectory) throws {
    let result = try runProcess(
        "/usr/bin/openssl",
        [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            directory.file("server.key"), "-out", directory.file("server.crt"), "-days", "2", "-subj",
            "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
    #expect(result.status == 0, "openssl failed: \(result.errorOutput)")
}
