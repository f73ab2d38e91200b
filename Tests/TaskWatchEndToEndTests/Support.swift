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

/// A child started with posix_spawn, its outputs in files.
///
/// Not Foundation's `Process`: on Linux it sometimes never noticed that a child had exited, and its
/// pipes could be inherited by a daemon another test started at the same moment, so a read to end of
/// file waited for that daemon.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let lock = NSLock()
    private var status: Int32?

    /// Starts `executable` (a path, or a name looked up in PATH) with stdin from `input` (a file path),
    /// stdout and stderr appended to the given files.
    init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        input: String = "/dev/null",
        output: String = "/dev/null",
        errors: String = "/dev/null"
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with no blocked signals and default dispositions, whatever the runner set.
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environmentStrings = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp: [UnsafeMutablePointer<CChar>?] = environmentStrings.map { strdup($0) } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
        self.pid = pid
    }

    /// The exit status (128 + signal when killed), or nil while running.
    var exitStatus: Int32? {
        lock.withLock {
            if status == nil {
                var raw: Int32 = 0
                if waitpid(pid, &raw, WNOHANG) == pid {
                    let signal = raw & 0x7f
                    status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
                }
            }
            return status
        }
    }

    var isRunning: Bool { exitStatus == nil }

    /// Waits up to `seconds` for the child to exit; kills it after that. Returns its status.
    @discardableResult
    func wait(seconds: Double = 60) -> Int32 {
        if eventually(seconds, { !isRunning }) { return exitStatus ?? -1 }
        kill(pid, SIGKILL)
        _ = eventually(5) { !isRunning }
        return exitStatus ?? -1
    }

    func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            waitpid(pid, &raw, 0)
        }
    }
}

/// Runs a command to completion (at most `timeout` seconds) and returns its exit status, stdout and stderr.
@discardableResult
func runCommand(
    _ executable: String, _ arguments: [String], input: Data? = nil, timeout: Double = 120
) throws -> (
    status: Int32, stdout: Data, stderr: String
) {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let inputPath = directory.appendingPathComponent("in").path
    let outputPath = directory.appendingPathComponent("out").path
    let errorPath = directory.appendingPathComponent("err").path
    _ = FileManager.default.createFile(atPath: inputPath, contents: input ?? Data())
    let child = try ChildProcess(executable, arguments, input: inputPath, output: outputPath, errors: errorPath)
    let status = child.wait(seconds: timeout)
    let output = FileManager.default.contents(atPath: outputPath) ?? Data()
    let errors = FileManager.default.contents(atPath: errorPath) ?? Data()
    return (status, output, String(decoding: errors, as: UTF8.self))
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
    let child: ChildProcess
    let stderrFile: URL
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
        child = try ChildProcess(
            binDirectory.appendingPathComponent("taskwatchd").path,
            ["--ingest.socket", socketPath, "--web.listen-address", "127.0.0.1:\(port)", "--client.grace", "2s"]
                + arguments,
            errors: stderrFile.path)
        let up = eventually { (try? fetch(url("/-/ready")).status) == 200 }
        if !up { throw DaemonStartFailure(log: log) }
    }

    var log: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    var pid: pid_t { child.pid }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    func metrics() throws -> String { try fetch(url("/metrics")).text }

    /// The value of the sample whose name and labels are exactly `series`, or nil.
    func value(_ series: String) throws -> Double? {
        for line in try metrics().split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// Signals the daemon and waits for it to exit; returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        child.signal(signal)
        return child.wait(seconds: 15)
    }

    deinit {
        child.signal(SIGKILL)
        child.wait(seconds: 5)
        if ownsDirectory { try? FileManager.default.removeItem(at: directory) }
    }
}

struct DaemonStartFailure: Error, CustomStringConvertible {
    let log: String
    var description: String { "taskwatchd did not become ready:\n\(log)" }
}

/// A `taskwatch send` child process.
final class SenderProcess {
    let child: ChildProcess

    init(socket: String, arguments: [String]) throws {
        child = try ChildProcess(
            binDirectory.appendingPathComponent("taskwatch").path, ["send", "--socket", socket] + arguments)
    }

    var pid: Int32 { child.pid }

    func wait() -> Int32 { child.wait() }
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
