import Foundation
import Glibc

/// `taskwatchd` did not answer `/-/ready` in time.
public struct DaemonStartFailure: Error, CustomStringConvertible {
    public let log: String
    public var description: String { "taskwatchd did not become ready:\n\(log)" }
}

/// A real `taskwatchd` child on a socket in `directory` and a loopback port, ready once constructed.
/// Killed when released.
public final class DaemonProcess {
    public let directory: ScratchDirectory
    public let socketPath: String
    public let port: UInt16
    public let child: ChildProcess

    /// Starts a daemon with `--client.grace 2s` and `arguments`, in `directory` (a fresh one by default;
    /// pass one to let a second daemon take over the same socket path, as after a restart) on `port`
    /// (a free one by default). With `openFileLimit`, the daemon's soft and hard `RLIMIT_NOFILE` are
    /// set to it (through `sh -c 'ulimit -n'`, which `exec`s the daemon in the same process).
    public init(
        arguments: [String] = [],
        directory: ScratchDirectory = ScratchDirectory(),
        port: UInt16? = nil,
        openFileLimit: Int? = nil
    ) throws {
        self.directory = directory
        self.port = try port ?? freePort()
        socketPath = directory.file("ingest.sock")
        let command =
            [builtExecutable("taskwatchd"), "--ingest.socket", socketPath]
            + ["--web.listen-address", "127.0.0.1:\(self.port)", "--client.grace", "2s"] + arguments
        let errors = directory.file("taskwatchd-\(UInt32.random(in: 0...UInt32.max)).log")
        if let openFileLimit {
            child = try ChildProcess(
                "/bin/sh", ["-c", "ulimit -n \(openFileLimit) && exec \"$@\"", "sh"] + command, errors: errors)
        } else {
            child = try ChildProcess(command[0], Array(command.dropFirst()), errors: errors)
        }
        let ready = url("/-/ready")
        let up = eventually { (try? fetch(ready).status) == 200 }
        if !up { throw DaemonStartFailure(log: child.log) }
    }

    /// What the daemon has logged so far.
    public var log: String { child.log }

    public var pid: pid_t { child.pid }

    /// The URL of `path` on the daemon.
    public func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    /// The body of `/metrics`.
    public func metrics() throws -> String { try fetch(url("/metrics")).text }

    /// The value of the sample whose name and labels are written exactly `series`, or nil.
    public func value(_ series: String) throws -> Double? {
        for line in try metrics().split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// Every sample of `/metrics`; none when the scrape failed.
    public func samples() -> [Sample] { (try? metrics()).map(parseSamples) ?? [] }

    /// The value of the first sample named `name` whose labels include `labels`, or nil.
    public func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples().first { $0.matches(name, labels) }?.value
    }

    /// Sends `signal` unless the daemon has exited.
    public func signal(_ signal: Int32) { child.signal(signal) }

    /// Signals the daemon and waits for it to exit (killing it after 15 s); its exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        child.signal(signal)
        return child.waitOrKill(timeout: .seconds(15))
    }

    deinit {
        // Continued first, in case the test left it stopped.
        child.signal(SIGCONT)
        child.signal(SIGKILL)
        child.waitOrKill(timeout: .seconds(5))
    }
}
