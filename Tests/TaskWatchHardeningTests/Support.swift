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

struct SpawnError: Error, CustomStringConvertible {
    var description: String
}

/// Starts `executable` with `arguments`, standard input from /dev/null and both outputs appended to
/// files. posix_spawn directly rather than Foundation's Process, which on Linux sometimes never noticed
/// that a child had exited when several were started and killed from concurrent tests.
func spawn(_ executable: String, _ arguments: [String], output: String, errors: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    // The child starts with no blocked signals and default dispositions, whatever the test runner set.
    var empty = sigset_t()
    sigemptyset(&empty)
    var defaults = sigset_t()
    sigfillset(&defaults)
    posix_spawnattr_setsigmask(&attributes, &empty)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
    guard status == 0 else {
        throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(status)))")
    }
    return pid
}

/// Reaps `pid` if it has exited; returns its exit status (128 + signal for a killed child).
func reap(_ pid: pid_t, block: Bool = false) -> Int32? {
    var status: Int32 = 0
    let result = waitpid(pid, &status, block ? 0 : WNOHANG)
    guard result == pid else { return nil }
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
}

/// Runs a program to completion, capturing both outputs through files (never pipes, which a daemon
/// spawned at the same moment by another test could inherit and hold open).
func runProcess(
    _ executable: String, _ arguments: [String], timeout: Duration = .seconds(60)
) throws
    -> ProcessResult
{
    let directory = ScratchDirectory()
    let pid = try spawn(executable, arguments, output: directory.file("out"), errors: directory.file("err"))
    var status: Int32?
    _ = eventually(timeout: timeout, interval: 2_000) {
        status = reap(pid)
        return status != nil
    }
    if status == nil {
        kill(pid, SIGKILL)
        status = reap(pid, block: true)
    }
    let output = (try? String(contentsOfFile: directory.file("out"), encoding: .utf8)) ?? ""
    let errors = (try? String(contentsOfFile: directory.file("err"), encoding: .utf8)) ?? ""
    return ProcessResult(status: status ?? -1, output: output, errorOutput: errors)
}

/// A long-running child whose outputs go to a log file. Killed (SIGKILL) and reaped when released.
final class Child {
    let pid: pid_t
    let logPath: String
    private var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String], log: String) throws {
        logPath = log
        pid = try spawn(executable, arguments, output: log, errors: log)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    var isRunning: Bool {
        if exitStatus == nil { exitStatus = reap(pid) }
        return exitStatus == nil
    }

    func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits up to `timeout` for the child to exit; returns its status, or nil if it is still running.
    func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        _ = eventually(timeout: timeout) { !isRunning }
        return exitStatus
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            _ = reap(pid, block: true)
        }
    }
}

/// Polls `condition` every `interval` µs until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(15), interval: useconds_t = 20_000, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(interval)
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
