import CTaskWatchSocket
import Foundation
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// A datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let path: String
    let fd: Int32

    init(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(tw_unix_bind(fd, path) == 0)
    }

    /// The next datagram, or nil after `seconds`.
    func receive(within seconds: Double) -> String? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(max(0, seconds) * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
    }

    /// Collects datagrams until one contains `state` or `seconds` pass.
    func waitFor(_ state: String, within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let message = receive(within: deadline.timeIntervalSinceNow), message.contains(state) { return true }
        }
        return false
    }

    deinit { close(fd) }
}

/// systemd integration with the real binary: readiness, stopping, watchdog and socket activation.
@Suite(.serialized) struct SystemdEndToEndTests {
    @Test func notifiesReadyWatchdogAndStopping() throws {
        let directory = ScratchDirectory()
        let notify = NotifySocket(path: directory.file("notify"))
        let port = try freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        environment["WATCHDOG_USEC"] = "400000"
        let process = try ChildProcess(
            builtExecutable("taskwatchd"),
            [
                "--ingest.socket", directory.file("ingest.sock"),
                "--web.listen-address", "127.0.0.1:\(port)",
            ],
            environment: environment)
        #expect(notify.waitFor("READY=1", within: 10))
        #expect(try fetch("http://127.0.0.1:\(port)/-/ready").status == 200)
        // WATCHDOG_USEC=400ms asks for a ping at least every 200 ms.
        #expect(notify.waitFor("WATCHDOG=1", within: 2))
        process.signal(SIGTERM)
        #expect(notify.waitFor("STOPPING=1", within: 5))
        #expect(process.waitOrKill(timeout: .seconds(15)) == 0)
    }

    /// `WATCHDOG=1` goes to systemd only when it asked for it (a review counted a ping every tick
    /// with no `WATCHDOG_USEC`, up to 780 a second with a short `--web.config.check-interval`).
    @Test func sendsNoWatchdogPingsWhenTheWatchdogIsOff() throws {
        let directory = ScratchDirectory()
        let notify = NotifySocket(path: directory.file("notify"))
        let port = try freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        environment["WATCHDOG_USEC"] = nil
        let process = try ChildProcess(
            builtExecutable("taskwatchd"),
            ["--ingest.socket", directory.file("ingest.sock"), "--web.listen-address", "127.0.0.1:\(port)"],
            environment: environment)
        #expect(notify.waitFor("READY=1", within: 10))
        #expect(!notify.waitFor("WATCHDOG=1", within: 2.5))
        process.signal(SIGTERM)
        #expect(notify.waitFor("STOPPING=1", within: 5))
        #expect(process.waitOrKill(timeout: .seconds(15)) == 0)
    }

    @Test func takesBothSocketsFromSocketActivation() throws {
        let directory = ScratchDirectory()
        let port = try freePort()
        let ingestPath = directory.file("ingest.sock")
        // Two nested launchers, as systemd would pass a stream and a seqpacket socket; each hands its
        // descriptors down and execs the next at the first connection.
        let process = try ChildProcess(
            "/usr/bin/systemd-socket-activate",
            [
                "-l", "127.0.0.1:\(port)", "--fdname=http",
                "/usr/bin/systemd-socket-activate", "--seqpacket", "-l", ingestPath, "--fdname=ingest",
                builtExecutable("taskwatchd"), "--web.systemd-socket",
                // Both have no effect on sockets systemd passes, which the daemon says.
                "--web.listen-address", "127.0.0.1:1", "--ingest.socket", directory.file("unused.sock"),
            ], errors: directory.file("daemon.log"))
        // The first HTTP connection starts the chain; it waits in the backlog until the daemon accepts.
        #expect(eventually { (try? fetch("http://127.0.0.1:\(port)/-/ready").status) == 200 })
        let client = try RawClient(path: ingestPath)
        client.send(.hello(Hello(claimedPID: 0, intervalNanoseconds: 1, process: "activated", clientVersion: "t")))
        let task = [Label("task", "default")]
        client.send(
            .declare([SeriesDeclaration(id: 1, type: .gauge, name: "swift_tasks", help: "Live.", labels: task)]))
        client.send(.values([ValueUpdate(id: 1, value: 11)]))
        let series = "swift_tasks{process=\"activated\",pid=\"\(getpid())\",task=\"default\"} 11"
        #expect(
            eventually {
                (try? fetch("http://127.0.0.1:\(port)/metrics").text.contains(series)) == true
            })
        #expect(process.log.contains("--web.listen-address has no effect with --web.systemd-socket"), "\(process.log)")
        #expect(process.log.contains("--ingest.socket and --ingest.socket-mode have no effect"), "\(process.log)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("unused.sock")))
        process.signal(SIGTERM)
        #expect(process.waitOrKill(timeout: .seconds(15)) == 0)
    }
}
