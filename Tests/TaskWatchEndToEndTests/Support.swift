import CTaskWatchSocket
import Foundation
import TaskWatchWire
import Testing

/// Where the built executables are: `TASKWATCH_BIN_DIR` (set by `make test`), else beside the test bundle.
let binDirectory: URL = {
    if let explicit = ProcessInfo.processInfo.environment["TASKWATCH_BIN_DIR"], !explicit.isEmpty {
        return URL(fileURLWithPath: explicit)
    }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("taskwatchd").path) { return url }
    }
    return URL(fileURLWithPath: ".build/debug")
}()

/// A short temporary directory: socket paths must fit in 108 bytes.
func temporaryDirectory() -> URL {
    let path = "/tmp/tw-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
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

/// The result of one HTTP request made with curl.
struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Runs a command to completion and returns its exit status, stdout and stderr.
@discardableResult
func runCommand(
    _ executable: String, _ arguments: [String], input: Data? = nil
) throws -> (
    status: Int32, stdout: Data, stderr: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
    process.arguments = executable.hasPrefix("/") ? arguments : [executable] + arguments
    let out = Pipe()
    let err = Pipe()
    let stdin = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = stdin
    try process.run()
    let writer = Thread {
        if let input { stdin.fileHandleForWriting.write(input) }
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    // Drain stderr concurrently so neither pipe can fill and stall the child.
    let errorBox = ErrorBox()
    let reader = Thread { errorBox.data = err.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !errorBox.isSet { usleep(1_000) }
    return (process.terminationStatus, data, String(decoding: errorBox.data ?? Data(), as: UTF8.self))
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Data?
    var data: Data? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
    var isSet: Bool { data != nil }
}

/// Fetches a URL with curl. `headers` go out as request headers.
func fetch(_ url: String, method: String = "GET", headers: [String] = [], compressed: Bool = false) throws -> HTTPResult
{
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let headerFile = directory.appendingPathComponent("headers").path
    var arguments = ["-s", "-D", headerFile, "-X", method, "--max-time", "10"]
    if method == "HEAD" { arguments = ["-s", "-I", "-D", headerFile, "--max-time", "10"] }
    for header in headers { arguments += ["-H", header] }
    if compressed { arguments.append("--compressed") }
    arguments.append(url)
    let result = try runCommand("curl", arguments)
    let rawHeaders = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
    var status = 0
    var parsed: [String: String] = [:]
    for line in rawHeaders.split(separator: "\r\n") {
        if line.hasPrefix("HTTP/") {
            status = Int(line.split(separator: " ")[1]) ?? 0
        } else if let colon = line.firstIndex(of: ":") {
            parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    return HTTPResult(status: status, headers: parsed, body: result.stdout)
}

/// A real `taskwatchd` child on a temporary socket and a free loopback port.
final class DaemonProcess {
    let directory: URL
    let socketPath: String
    let port: UInt16
    let process = Process()
    let stderrFile: URL
    let extraArguments: [String]

    private let ownsDirectory: Bool

    /// A daemon in `directory` (a fresh one by default, removed at deinit; a given one is kept, so a
    /// second daemon can take over the same socket path as after a restart).
    init(arguments: [String] = [], directory: URL? = nil, port: UInt16 = freePort()) throws {
        ownsDirectory = directory == nil
        let directory = directory ?? temporaryDirectory()
        self.directory = directory
        self.port = port
        socketPath = directory.appendingPathComponent("ingest.sock").path
        stderrFile = directory.appendingPathComponent("taskwatchd-\(UInt32.random(in: 0...UInt32.max)).log")
        extraArguments = arguments
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process.executableURL = binDirectory.appendingPathComponent("taskwatchd")
        process.arguments =
            ["--ingest.socket", socketPath, "--web.listen-address", "127.0.0.1:\(port)", "--client.grace", "2s"]
            + arguments
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let up = eventually { (try? fetch(url("/-/ready")).status) == 200 }
        if !up { throw DaemonStartFailure(log: log) }
    }

    var log: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    func metrics() throws -> String { try fetch(url("/metrics")).text }

    /// The value of the sample whose name and labels are exactly `series`, or nil.
    func value(_ series: String) throws -> Double? {
        for line in try metrics().split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    func stop(signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        stop(signal: SIGKILL)
        if ownsDirectory { try? FileManager.default.removeItem(at: directory) }
    }
}

struct DaemonStartFailure: Error, CustomStringConvertible {
    let log: String
    var description: String { "taskwatchd did not become ready:\n\(log)" }
}

/// A `taskwatch send` child process.
final class SenderProcess {
    let process = Process()

    init(socket: String, arguments: [String]) throws {
        process.executableURL = binDirectory.appendingPathComponent("taskwatch")
        process.arguments = ["send", "--socket", socket] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func wait() -> Int32 {
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

/// A connection from the test process itself, for sending exact bytes.
final class RawClient {
    let fd: Int32

    init(path: String) throws {
        fd = tw_seqpacket_socket()
        guard fd >= 0, tw_unix_connect(fd, path) == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    func send(_ frame: Frame) {
        for bytes in FrameEncoder.encode(frame) { send(bytes) }
    }

    /// Whether the daemon closed this connection.
    var isClosedByPeer: Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        var truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { tw_recv_message(fd, $0.baseAddress, $0.count, &truncated) }
        return n == 0
    }

    deinit { close(fd) }
}

/// Checks a body with promtool (text) and Python's prometheus_client (both formats).
func expectValidExposition(
    _ body: Data, openMetrics: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    if !openMetrics {
        let promtool = try runCommand("promtool", ["check", "metrics"], input: body)
        #expect(
            promtool.status == 0,
            "promtool: \(String(decoding: promtool.stdout, as: UTF8.self)) \(promtool.stderr)",
            sourceLocation: sourceLocation)
    }
    let module = openMetrics ? "prometheus_client.openmetrics.parser" : "prometheus_client.parser"
    let script = "import sys\nfrom \(module) import text_string_to_metric_families as p\nlist(p(sys.stdin.read()))"
    let python = try runCommand("python3", ["-c", script], input: body)
    #expect(python.status == 0, "prometheus_client: \(python.stderr)", sourceLocation: sourceLocation)
}
