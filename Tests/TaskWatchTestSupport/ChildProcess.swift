import Foundation
import Glibc
import Synchronization

/// posix_spawn failed to start a child.
public struct SpawnError: Error, CustomStringConvertible {
    public let description: String
}

/// A child started with posix_spawn, its standard input read from a file and its outputs appended to
/// files. Killed (SIGKILL) and reaped when released if it is still running. Like any child, it inherits
/// every descriptor the test process holds without close-on-exec.
///
/// Not Foundation's `Process`: on Linux it sometimes never noticed that a child had exited when several
/// were started and killed from concurrent tests, and its pipes could be inherited by a daemon another
/// test started at the same moment, so a read to end of file waited for that daemon.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// The file standard error goes to.
    public let errorPath: String
    private let status = Mutex<Int32?>(nil)

    /// Starts `executable` (a path, or a name looked up in PATH) with `arguments` and `environment` (this
    /// process's by default). The child starts with no blocked signals and default dispositions,
    /// whatever the test runner set.
    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        input: String = "/dev/null",
        output: String = "/dev/null",
        errors: String = "/dev/null"
    ) throws {
        errorPath = errors
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result: Int32
        if let environment {
            let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { for pointer in envp { free(pointer) } }
            result = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        } else {
            result = posix_spawnp(&pid, executable, &actions, &attributes, argv, environ)
        }
        guard result == 0 else {
            throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// Starts `executable` with both outputs appended to the file `log`.
    public convenience init(_ executable: String, _ arguments: [String], log: String) throws {
        try self.init(executable, arguments, output: log, errors: log)
    }

    /// What the child has written to its standard error file so far.
    public var log: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// The exit status (128 + signal when killed), or nil while it runs. Reaps the child once it exited.
    public var exitStatus: Int32? {
        status.withLock { status in
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

    public var isRunning: Bool { exitStatus == nil }

    /// Sends `signal` unless the child has already exited.
    public func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits up to `timeout` for the child to exit; its status, or nil if it still runs.
    public func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        _ = eventually(timeout: timeout, interval: .milliseconds(2)) { !isRunning }
        return exitStatus
    }

    /// Waits up to `timeout` for the child to exit and kills it after that; its status (-1 if even
    /// SIGKILL did not end it within 5 s).
    @discardableResult
    public func waitOrKill(timeout: Duration = .seconds(60)) -> Int32 {
        if let status = waitForExit(timeout: timeout) { return status }
        kill(pid, SIGKILL)
        return waitForExit(timeout: .seconds(5)) ?? -1
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            waitpid(pid, &raw, 0)
        }
    }
}

/// The outcome of a program run to completion.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var output: Data
    public var errorOutput: String

    /// The standard output as UTF-8 text.
    public var outputText: String { String(decoding: output, as: UTF8.self) }
}

/// Runs a program (a path, or a name looked up in PATH) to completion with `input` on its standard
/// input, capturing both outputs through files (never pipes, which a daemon spawned at the same moment
/// could inherit and hold open). Killed after `timeout`.
public func runProcess(
    _ executable: String, _ arguments: [String], input: Data? = nil, timeout: Duration = .seconds(120)
) throws -> ProcessResult {
    let directory = ScratchDirectory()
    var inputPath = "/dev/null"
    if let input {
        inputPath = directory.file("in")
        try input.write(to: URL(fileURLWithPath: inputPath))
    }
    let child = try ChildProcess(
        executable, arguments, input: inputPath, output: directory.file("out"), errors: directory.file("err"))
    let status = child.waitOrKill(timeout: timeout)
    let output = FileManager.default.contents(atPath: directory.file("out")) ?? Data()
    let errors = FileManager.default.contents(atPath: directory.file("err")) ?? Data()
    return ProcessResult(status: status, output: output, errorOutput: String(decoding: errors, as: UTF8.self))
}
