import CTaskWatchSocket
import Foundation
import Glibc
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// A real daemon whose ingest socket file is removed while it runs (tmpfiles aging its directory under
/// /tmp): it binds the path again, says so in its log, and clients connecting afterwards are served.
@Suite struct IngestSocketFileTests {
    @Test func aDaemonWhoseSocketFileIsRemovedBindsItAgainAndLogsAWarning() throws {
        let daemon = try DaemonProcess()
        #expect(unlink(daemon.socketPath) == 0)
        var client: SeqpacketClient?
        #expect(
            eventually(timeout: .seconds(5)) {
                client = try? SeqpacketClient(path: daemon.socketPath)
                return client != nil
            })
        try #require(client).send(
            .hello(Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "revived", clientVersion: "t")))
        #expect(try eventually { try daemon.metrics().contains("process=\"revived\"") })

        let warnings = daemon.log.split(separator: "\n").map { logfmtFields(String($0)) }.filter {
            $0["msg"]?.hasPrefix("The ingest socket file was removed") == true
        }
        #expect(warnings.count == 1, "\(daemon.log)")
        #expect(warnings.first?["level"] == "warn")
        #expect(warnings.first?["path"] == daemon.socketPath)
    }
}
