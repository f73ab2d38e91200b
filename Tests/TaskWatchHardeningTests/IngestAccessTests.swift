import Foundation
import Glibc
import TaskWatchTestSupport
import Testing

/// `--ingest.allowed-uids` and `--ingest.allowed-gids`: a real connection from a process running as
/// another user is refused and counted, while an allowed process's data flows.
@Suite struct IngestAccessTests {
    /// A daemon whose socket anyone may reach (mode 0666), so only its own check can refuse. (A socket
    /// directly in a world-writable directory's child would be made 0700 by the daemon; one level
    /// deeper it creates the directory 0755.)
    struct OpenDaemon {
        let directory = ScratchDirectory(mode: 0o755)
        let socket: String
        let daemon: ChildProcess
        let port: UInt16

        init(allowing access: [String]) throws {
            socket = directory.file("run/ingest.sock")
            daemon = try ChildProcess(
                builtExecutable("taskwatchd"),
                ["--web.listen-address", "127.0.0.1:0", "--ingest.socket", socket, "--ingest.socket-mode", "0666"]
                    + access, log: directory.file("daemon.log"))
            port = try #require(loggedPort(daemon), "\(daemon.log)")
        }

        /// Runs `taskwatch send` as `nobody` with `groups` (setpriv options) to completion.
        /// One send, without a goodbye, so an admitted sender's series stay through the grace period.
        func sendAsNobody(_ process: String, groups: [String]) throws -> ProcessResult {
            try runProcess(
                "/usr/bin/setpriv",
                ["--reuid=65534", "--regid=65534"] + groups + [
                    builtExecutable("taskwatch"), "send", "--socket", socket, "--process", process, "--hold", "0s",
                ])
        }

        /// Polls `/metrics` until a `not_allowed` rejection and `condition` both show; the last body.
        func metricsOnceRefused(_ condition: @escaping (String) -> Bool = { _ in true }) -> (Bool, String) {
            var body = ""
            let seen = eventually(timeout: .seconds(15)) {
                body = (try? curl("http://127.0.0.1:\(port)/metrics").body) ?? ""
                return (sample(body, "taskwatch_clients_rejected_total{", containing: ["not_allowed"]) ?? 0) >= 1
                    && condition(body)
            }
            return (seen, body)
        }
    }

    @Test func peerWhoseUIDIsNotAllowedIsRefusedAndCounted() throws {
        try #require(getuid() == 0, "needs root to run a sender as nobody")
        let fixture = try OpenDaemon(allowing: ["--ingest.allowed-uids", "0"])
        var status = stat()
        #expect(stat(fixture.socket, &status) == 0 && status.st_mode & 0o777 == 0o666)

        let intruder = try fixture.sendAsNobody("intruder", groups: ["--clear-groups"])
        // The kernel let it connect (the file mode allows it), so the refusal is the daemon's, which the
        // sender sees as its connection closed at once.
        #expect(intruder.status == 1, "\(intruder.errorOutput)")
        #expect(intruder.errorOutput.contains("closed the connection at once: it refuses this process (uid 65534)"))
        let allowed = try runProcess(
            builtExecutable("taskwatch"),
            ["send", "--socket", fixture.socket, "--process", "insider", "--hold", "0s"])
        #expect(allowed.status == 0)

        let (refused, body) = fixture.metricsOnceRefused { $0.contains("process=\"insider\"") }
        #expect(refused, "\(body)")
        #expect(!body.contains("process=\"intruder\""))
    }

    /// A daemon in a pid namespace of its own (a container run without the host's pids; here
    /// `unshare --pid`) is given pid 0 for a peer outside it. Such a peer is refused, counted and logged,
    /// and nothing of it is shown. Before, it was served as `pid="0"`, and two such processes of one
    /// name took each other's place at every hello, each closing the other's connection.
    @Test(.enabled(if: geteuid() == 0, "needs root to start the daemon in a pid namespace of its own"))
    func aPeerOutsideTheDaemonsPidNamespaceIsRefusedCountedAndLogged() throws {
        let directory = ScratchDirectory()
        let socket = directory.file("ingest.sock")
        // `--kill-child`: the daemon is killed with unshare, which the child process's release kills.
        let daemon = try ChildProcess(
            "/usr/bin/unshare",
            [
                "--pid", "--fork", "--kill-child", "--mount-proc", builtExecutable("taskwatchd"),
                "--web.listen-address", "127.0.0.1:0", "--ingest.socket", socket,
            ], log: directory.file("daemon.log"))
        let port = try #require(loggedPort(daemon), "\(daemon.log)")
        for _ in 0..<2 {
            let send = try runProcess(
                builtExecutable("taskwatch"), ["send", "--socket", socket, "--process", "app", "--hold", "0s"])
            // The sender is told, among the causes of a refusal at accept, the one that applies here.
            #expect(send.status == 1, "\(send.errorOutput)")
            #expect(send.errorOutput.contains("outside the daemon's pid namespace"), "\(send.errorOutput)")
        }
        var body = ""
        let refused = eventually(timeout: .seconds(15)) {
            body = (try? curl("http://127.0.0.1:\(port)/metrics").body) ?? ""
            return sample(body, "taskwatch_clients_rejected_total{", containing: ["unknown_pid"]) == 2
        }
        #expect(refused, "\(body)")
        #expect(!body.contains("process=\"app\""), "\(body)")
        #expect(sample(body, "taskwatch_clients ") == 0)
        let logged = daemon.log.split(separator: "\n").filter {
            $0.contains("Ingest client rejected") && $0.contains("reason=unknown_pid")
        }
        #expect(logged.count >= 1, "\(daemon.log)")
        #expect(logged.allSatisfy { $0.contains("pid=0") && $0.contains("pid namespace") }, "\(logged)")
    }

    /// A service that joined the allowed group as a supplementary one (systemd's
    /// `SupplementaryGroups=`, `usermod -aG`) is let in; the same user without the group is not.
    @Test func supplementaryGroupMembershipCountsForAllowedGIDs() throws {
        try #require(getuid() == 0, "needs root to run senders as nobody with chosen groups")
        let fixture = try OpenDaemon(allowing: ["--ingest.allowed-gids", "4242"])
        #expect(try fixture.sendAsNobody("member", groups: ["--groups=4242"]).status == 0)
        #expect(try fixture.sendAsNobody("outsider", groups: ["--clear-groups"]).status == 1)

        let (refused, body) = fixture.metricsOnceRefused { $0.contains("process=\"member\"") }
        #expect(refused, "\(body)")
        #expect(!body.contains("process=\"outsider\""))
    }
}
