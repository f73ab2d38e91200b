import Foundation
import Glibc
import TaskWatchTestSupport
import Testing

/// How the daemon under test gets its sockets.
enum Launch: String, CaseIterable, Sendable {
    /// `taskwatchd` binds both sockets itself.
    case plain
    /// `systemd-socket-activate --seqpacket` holds the ingest socket and starts the daemon on the first
    /// connection.
    case ingestActivated
    /// `systemd-socket-activate` holds the HTTP socket (`--web.systemd-socket`); a first request
    /// starts the daemon.
    case httpActivated
}

/// SIGKILL the daemon under load, start it again: the sender reconnects and every counter resumes at
/// no less than the last value scraped before the crash.
@Suite(.serialized) struct CrashRestartTests {
    static let activator = "/usr/bin/systemd-socket-activate"

    /// Starts the daemon as `launch` says; returns it and its HTTP port once it answers.
    static func start(
        _ launch: Launch, socket: String, httpPort: UInt16, log: String
    ) throws -> (ChildProcess, UInt16) {
        let daemon = builtExecutable("taskwatchd")
        switch launch {
        case .plain:
            let child = try ChildProcess(
                daemon, ["--web.listen-address", "127.0.0.1:0", "--ingest.socket", socket, "--client.grace", "60s"],
                log: log)
            return (child, try #require(loggedPort(child), "no port: \(child.log)"))
        case .ingestActivated:
            let child = try ChildProcess(
                activator,
                [
                    "--seqpacket", "-l", socket, "--fdname=ingest", daemon, "--web.listen-address", "127.0.0.1:0",
                    "--client.grace", "60s",
                ], log: log)
            // Launched by the sender's first connection: the caller learns the port afterwards.
            #expect(eventually(timeout: .seconds(15)) { child.log.contains("Listening on \(socket)") }, "\(child.log)")
            return (child, loggedPort(child, timeout: .milliseconds(200)) ?? 0)
        case .httpActivated:
            let child = try ChildProcess(
                activator,
                [
                    "-l", "127.0.0.1:\(httpPort)", "--fdname=http", daemon, "--web.systemd-socket", "--ingest.socket",
                    socket, "--client.grace", "60s",
                ], log: log)
            #expect(eventually(timeout: .seconds(15)) { child.log.contains("Listening on 127.0.0.1:\(httpPort)") })
            // The first request launches the daemon; it is answered once the daemon accepts it.
            #expect(try curl("http://127.0.0.1:\(httpPort)/-/healthy").status == 200, "\(child.log)")
            return (child, httpPort)
        }
    }

    static func created(port: UInt16) -> Double? {
        guard let response = try? curl("http://127.0.0.1:\(port)/metrics"), response.status == 200 else { return nil }
        return sample(response.body, "swift_tasks_created_total{", containing: ["process=\"crashy\""])
    }

    @Test func plainDaemonResumesAfterSIGKILL() throws { try crashAndRestart(.plain) }

    @Test func ingestSocketActivatedDaemonResumesAfterSIGKILL() throws { try crashAndRestart(.ingestActivated) }

    @Test func httpSocketActivatedDaemonResumesAfterSIGKILL() throws { try crashAndRestart(.httpActivated) }

    func crashAndRestart(_ launch: Launch) throws {
        let directory = ScratchDirectory()
        let socket = directory.file("ingest.sock")
        // A port that was free a moment ago, for the activator, which needs one up front.
        let httpPort = try freePort()
        var (daemon, port) = try Self.start(launch, socket: socket, httpPort: httpPort, log: directory.file("d1.log"))
        let sender = try ChildProcess(
            builtExecutable("taskwatch"),
            [
                "send", "--socket", socket, "--process", "crashy", "--grow", "1", "--hold", "40s", "--interval", "50ms",
            ], log: directory.file("sender.log"))
        if launch == .ingestActivated { port = try #require(loggedPort(daemon), "\(daemon.log)") }
        #expect(eventually(timeout: .seconds(15)) { (Self.created(port: port) ?? 0) >= 10 }, "no data: \(daemon.log)")
        let lastSeen = try #require(Self.created(port: port))

        daemon.signal(SIGKILL)
        #expect(daemon.waitForExit() != nil)
        #expect(Self.created(port: port) == nil, "the killed daemon no longer answers")

        var (restarted, newPort) = try Self.start(
            launch, socket: socket, httpPort: httpPort, log: directory.file("d2.log"))
        // The reconnecting sender launches an ingest-activated daemon.
        if launch == .ingestActivated { newPort = try #require(loggedPort(restarted), "\(restarted.log)") }
        var resumed: Double?
        #expect(
            eventually(timeout: .seconds(20)) {
                resumed = Self.created(port: newPort)
                return resumed != nil
            }, "sender did not reconnect: \(restarted.log) \(sender.log)")
        let value = try #require(resumed)
        #expect(value >= lastSeen, "counter went back from \(lastSeen) to \(value)")
        // And it keeps counting on the new daemon.
        #expect(eventually(timeout: .seconds(15)) { (Self.created(port: newPort) ?? 0) > value })
        sender.signal(SIGKILL)
        restarted.signal(SIGTERM)
        #expect(restarted.waitForExit() == 0)
    }
}
