import Foundation
import Logging
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

/// What counts as a stalled daemon, from heartbeats and request start times.
@Suite struct LivenessCheckTests {
    let check = LivenessCheck(limit: .seconds(15))
    let second: UInt64 = 1_000_000_000

    @Test func everyPartRecentIsHealthy() {
        let now = 100 * second
        #expect(check.stall(now: now, ingestBeat: now - second, acceptBeat: now, oldestRequestStart: nil) == nil)
        #expect(check.stall(now: now, ingestBeat: now, acceptBeat: now, oldestRequestStart: now - 14 * second) == nil)
    }

    @Test func eachPartPastTheLimitIsNamed() {
        let now = 100 * second
        #expect(
            check.stall(now: now, ingestBeat: now - 16 * second, acceptBeat: now, oldestRequestStart: nil)
                == "the ingest thread has not run for 16.0 s")
        #expect(
            check.stall(now: now, ingestBeat: now, acceptBeat: now - 20 * second, oldestRequestStart: nil)
                == "the HTTP accept thread has not run for 20.0 s")
        #expect(
            check.stall(now: now, ingestBeat: now, acceptBeat: now, oldestRequestStart: now - 15_500_000_000)
                == "an HTTP request has been in its handler for 15.5 s")
    }

    @Test func aRequestIsInFlightOnlyWhileItsBodyRuns() {
        let requests = RequestsInFlight()
        #expect(requests.oldestStartNanoseconds == nil)
        let inside = requests.track { requests.oldestStartNanoseconds }
        #expect(inside != nil)
        #expect(requests.oldestStartNanoseconds == nil)
    }
}

/// The running daemon: idle threads keep beating, and one that stops makes `/-/healthy` fail and the
/// watchdog ping stop (a review froze the ingest and HTTP threads and the pings went on).
@Suite(.serialized) struct DaemonLivenessTests {
    @Test func anIdleDaemonIsHealthyAndAStoppedIngestThreadIsNot() throws {
        let directory = ScratchDirectory()
        var configuration = DaemonConfiguration()
        configuration.ingestSocketPath = directory.file("ingest.sock")
        configuration.listenAddresses = ["127.0.0.1:0"]
        configuration.webConfigCheckInterval = nil
        configuration.stallLimit = .milliseconds(1_500)
        let daemon = try Daemon(
            configuration: configuration, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        defer { daemon.shutdown() }
        let url = "http://127.0.0.1:\(daemon.httpPorts[0])/-/healthy"

        // Longer than the limit with nothing to do: the accept thread's one-second wake-ups and the
        // ingest thread's ticks keep both alive.
        Thread.sleep(forTimeInterval: 2.5)
        #expect(daemon.stall() == nil)
        #expect(daemon.watchdogPing() == nil)
        #expect(try fetch(url).status == 200)

        daemon.listener.stop()
        Thread.sleep(forTimeInterval: 2)
        let stall = try #require(daemon.stall())
        #expect(stall.hasPrefix("the ingest thread has not run for"))
        #expect(daemon.watchdogPing() == stall)
        let answer = try fetch(url)
        #expect(answer.status == 503)
        #expect(answer.text.contains("ingest thread"))
    }
}
