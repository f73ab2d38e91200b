import Foundation
import Glibc
import TaskWatchTestSupport
import Testing

/// `--ingest.allowed-uids`: a real connection from a process running as another user is refused and
/// counted, while an allowed process's data flows.
@Suite struct IngestAccessTests {
    @Test func peerWhoseUIDIsNotAllowedIsRefusedAndCounted() throws {
        try #require(getuid() == 0, "needs root to run a sender as nobody")
        // Everyone may reach the socket file, so only the daemon's own check can refuse. (A socket
        // directly in a world-writable directory's child would be made 0700 by the daemon; one level
        // deeper it creates the directory 0755.)
        let directory = ScratchDirectory(mode: 0o755)
        let socket = directory.file("run/ingest.sock")
        let daemon = try ChildProcess(
            builtExecutable("taskwatchd"),
            [
                "--web.listen-address", "127.0.0.1:0", "--ingest.socket", socket, "--ingest.socket-mode", "0666",
                "--ingest.allowed-uids", "0",
            ], log: directory.file("daemon.log"))
        let port = try #require(loggedPort(daemon), "\(daemon.log)")
        var status = stat()
        #expect(stat(socket, &status) == 0 && status.st_mode & 0o777 == 0o666)

        let intruder = try runProcess(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", builtExecutable("taskwatch"), "send", "--socket",
                socket,
                "--process", "intruder", "--hold", "0s",
            ])
        // The kernel let it connect (the file mode allows it), so the refusal is the daemon's.
        #expect(intruder.status == 0, "\(intruder.errorOutput)")
        let allowed = try runProcess(
            builtExecutable("taskwatch"), ["send", "--socket", socket, "--process", "insider", "--hold", "300ms"])
        #expect(allowed.status == 0)

        var body = ""
        #expect(
            eventually(timeout: .seconds(15)) {
                body = (try? curl("http://127.0.0.1:\(port)/metrics").body) ?? ""
                return (sample(body, "taskwatch_clients_rejected_total{", containing: ["not_allowed"]) ?? 0) >= 1
            }, "\(body)")
        #expect(!body.contains("process=\"intruder\""))
        #expect(body.contains("process=\"insider\""))
    }
}
