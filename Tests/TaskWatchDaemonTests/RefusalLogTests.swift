import CTaskWatchSocket
import Foundation
import Glibc
import Logging
import Synchronization
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

/// A client's process name reaches the log: no character of it may end the line or start another.
@Suite struct LogfmtEscapingTests {
    @Test func noClientTextCanBreakALogfmtLine() {
        for hostile in [
            "x\r\nts=2026 level=error msg=\"forged\"", "x\nlevel=error", "x\rlevel=error", "a\u{2028}b",
            "a\u{85}b", "bell\u{7}", "esc\u{1B}[31m", "del\u{7F}",
        ] {
            let line = StderrLogHandler.logfmt([("msg", "refused"), ("process", hostile)])
            #expect(!line.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }, "\(line)")
            #expect(!line.unicodeScalars.contains { $0.value == 0x2028 || $0.value == 0x2029 })
            #expect(logfmtFields(line)["msg"] == "refused")
        }
        #expect(
            StderrLogHandler.logfmt([("process", "a\r\nb")]) == #"process="a\r\nb""#)
        #expect(StderrLogHandler.logfmt([("process", "plain")]) == "process=plain")
    }

    @Test func jsonLinesReadBackAsWritten() throws {
        let value = "a\"b\\c\r\nd\u{1}\u{2028}é"
        let line = StderrLogHandler.json([("msg", "refused"), ("process", value)])
        #expect(line == #"{"msg":"refused","process":"a\"b\\c\r\nd\u0001\#u{2028}é"}"#)
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
        #expect(parsed?["process"] == value)
    }

    /// Integers logged as `.stringConvertible` (pids, uids, limits) are JSON numbers, as in the other
    /// exporters' JSON logs, so a query can compare them; logfmt is unchanged. Every value was a string.
    @Test func integersAreJSONNumbers() throws {
        let event = LogEvent(
            level: .warning, message: "Ingest client rejected",
            metadata: [
                "pid": .stringConvertible(Int32(4242)), "limit": .stringConvertible(-1),
                "reason": "max_clients", "process": "12", "ratio": .stringConvertible(0.5),
            ],
            source: "", file: #fileID, function: #function, line: #line)
        let captured = StderrLogHandler(label: "test", format: .json, level: .info).render(event)
        let logfmt = StderrLogHandler(label: "test", format: .logfmt, level: .info).render(event)
        #expect(logfmt.hasSuffix(" limit=-1 pid=4242 process=12 ratio=0.5 reason=max_clients\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(captured.utf8)) as? [String: Any])
        #expect(object["pid"] as? Int == 4242)
        #expect(object["limit"] as? Int == -1)
        #expect(object["reason"] as? String == "max_clients")
        #expect(object["process"] as? String == "12", "a string that reads as a number stays a string")
        #expect(object["ratio"] as? String == "0.5", "only integers")
        #expect(captured.contains(#""pid":4242"#))
    }
}

/// The rate limit of `RefusalLog` on a clock the test moves by hand.
@Suite struct RefusalLogTests {
    final class Captured: Sendable {
        let log = CapturedLog()
        let time = Mutex<UInt64>(5_000_000_000)

        func advance(milliseconds: UInt64) { time.withLock { $0 += milliseconds * 1_000_000 } }
    }

    func refusalLog(level: Logger.Level = .info) -> (RefusalLog, Captured) {
        let captured = Captured()
        return (RefusalLog(logger: captured.log.logger(level: level), now: { captured.time.withLock { $0 } }), captured)
    }

    @Test func oneLineASecondPerReasonAndTheNextSaysHowManyWereHeldBack() {
        let (log, captured) = refusalLog()
        #expect(log.admit(counter: "c", reason: "a") == 0)
        for _ in 0..<17 { #expect(log.admit(counter: "c", reason: "a") == nil) }
        // Another reason, or the same reason of another counter, has a limit of its own.
        #expect(log.admit(counter: "c", reason: "b") == 0)
        #expect(log.admit(counter: "d", reason: "a") == 0)
        captured.advance(milliseconds: 999)
        #expect(log.admit(counter: "c", reason: "a") == nil)
        captured.advance(milliseconds: 1)
        #expect(log.admit(counter: "c", reason: "a") == 18)
        #expect(log.admit(counter: "c", reason: "a") == nil)
        captured.advance(milliseconds: 5_000)
        #expect(log.admit(counter: "c", reason: "a") == 1)
        #expect(log.admit(counter: "c", reason: "b") == 0)

        log.warning("Refused", suppressed: 0, metadata: [:])
        log.warning("Refused", suppressed: 17, metadata: [:])
        #expect(captured.log.events.map(\.message) == ["Refused", "Refused (17 more since the last line)"])
    }

    @Test func nothingIsCountedWhenWarningsAreNotShown() {
        let (log, _) = refusalLog(level: .error)
        for _ in 0..<3 { #expect(log.admit(counter: "c", reason: "a") == nil) }
    }
}

/// The warnings a real daemon writes about refused clients and dropped series.
@Suite(.serialized) struct DaemonRefusalLogTests {
    let hello = Frame.hello(
        Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "victim", clientVersion: "t"))

    /// The daemon's log lines whose `msg` starts with `message`, as logfmt fields.
    func lines(_ daemon: DaemonProcess, _ message: String) -> [[String: String]] {
        daemon.log.split(separator: "\n").map { logfmtFields(String($0)) }.filter {
            $0["msg"]?.hasPrefix(message) == true
        }
    }

    @Test func aConflictingSeriesIsLoggedWithItsNameAndClient() throws {
        let daemon = try DaemonProcess()
        let client = try SeqpacketClient(path: daemon.socketPath)
        client.send(hello)
        client.send(
            .declare([
                SeriesDeclaration(id: 1, type: .gauge, name: "app_jobs", help: "", labels: [Label("queue", "a")]),
                SeriesDeclaration(id: 2, type: .gauge, name: "app_jobs", help: "", labels: [Label("shard", "b")]),
            ]))
        #expect(
            try eventually { try daemon.value("taskwatch_series_dropped_total{reason=\"conflict\"}") == 1 })
        var found: [[String: String]] = []
        #expect(
            eventually {
                found = lines(daemon, "Series dropped")
                return !found.isEmpty
            }, "\(daemon.log)")
        let line = try #require(found.first)
        #expect(line["level"] == "warn")
        #expect(line["reason"] == "conflict")
        #expect(line["metric"] == "app_jobs")
        #expect(line["type"] == "gauge")
        #expect(line["labels"] == "shard")
        #expect(line["process"] == "victim")
        #expect(line["pid"] == "\(getpid())")
    }

    @Test func aClientSendingOnlyGarbageIsLoggedWhenDisconnected() throws {
        let daemon = try DaemonProcess()
        let client = try SeqpacketClient(path: daemon.socketPath)
        client.send(hello)
        for _ in 0..<40 { client.send([0xDE, 0xAD, 0xBE, 0xEF]) }
        var found: [[String: String]] = []
        #expect(
            eventually {
                found = lines(daemon, "Ingest client rejected")
                return !found.isEmpty
            }, "\(daemon.log)")
        let line = try #require(found.first)
        #expect(line["reason"] == "bad_frames")
        // Four bytes are shorter than a frame header.
        #expect(line["frame_reason"] == "truncated")
        #expect(line["frames"] == "32")
        #expect(line["process"] == "victim")
        #expect(line["pid"] == "\(getpid())")
        #expect(line["uid"] == "\(getuid())")
        #expect(line["command"]?.isEmpty == false)
    }

    @Test func aFloodOfRejectedClientsLogsAFewLinesAndCountsTheRest() throws {
        let daemon = try DaemonProcess(arguments: ["--ingest.max-clients", "1"])
        let holder = try SeqpacketClient(path: daemon.socketPath)
        holder.send(hello)
        #expect(try eventually { try daemon.value("taskwatch_clients") == 1 })

        let flood = 200
        let started = ContinuousClock.now
        // Kept open until counted, so every one reaches the daemon's accept whatever the kernel does
        // with a connection closed while still in the backlog.
        let refused = try (0..<flood).map { _ in try SeqpacketClient(path: daemon.socketPath) }
        let rejected = "taskwatch_clients_rejected_total{reason=\"max_clients\"}"
        #expect(try eventually { try daemon.value(rejected) == Double(flood) })
        let elapsed = ContinuousClock.now - started
        withExtendedLifetime(refused) {}
        // One line per second started, whatever a loaded machine did to the timing.
        let allowed = Int(elapsed / .seconds(1)) + 1
        let logged = lines(daemon, "Ingest client rejected")
        #expect(!logged.isEmpty && logged.count <= allowed, "\(logged.count) lines in \(elapsed)")
        for line in logged {
            #expect(line["reason"] == "max_clients")
            #expect(line["limit"] == "1")
            #expect(line["pid"] == "\(getpid())")
            #expect(line["uid"] == "\(getuid())")
            #expect(line["gid"] == "\(getgid())")
        }

        // The next refusal after the second is up says how many were held back: every refusal is
        // either a line or counted in one.
        usleep(1_100_000)
        let last = try SeqpacketClient(path: daemon.socketPath)
        // Polled until every refusal is accounted for: a line of the flood's last second may still be on
        // its way to the log when the next one is read.
        var all: [[String: String]] = []
        var heldBack = 0
        #expect(
            eventually {
                all = lines(daemon, "Ingest client rejected")
                heldBack = all.compactMap { heldBackCount($0["msg"] ?? "") }.reduce(0, +)
                return all.count + heldBack == flood + 1
            }, "\(all.count) lines and \(heldBack) held back for \(flood + 1) refusals: \(daemon.log)")
        withExtendedLifetime(last) {}
        #expect(all.count > logged.count)
        #expect(heldBack >= flood - allowed)
    }
}

/// N of a message ending "(N more since the last line)", or 0.
func heldBackCount(_ message: String) -> Int {
    guard let match = message.firstMatch(of: /\((\d+) more since the last line\)$/) else { return 0 }
    return Int(match.1) ?? 0
}

/// The fields of one logfmt line, quoted values unescaped.
func logfmtFields(_ line: String) -> [String: String] {
    var fields: [String: String] = [:]
    for match in line.matches(of: /(\w+)=("(?:[^"\\]|\\.)*"|\S*)/) {
        var value = String(match.2)
        if value.hasPrefix("\"") {
            value = String(value.dropFirst().dropLast())
                .replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(of: "\\\\", with: "\\")
        }
        fields[String(match.1)] = value
    }
    return fields
}

/// A connection to an ingest socket from the test process, closed when released.
final class SeqpacketClient {
    let fd: Int32

    init(path: String) throws {
        fd = tw_seqpacket_socket()
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        // Non-blocking: a full backlog says EAGAIN until the daemon's next accept round.
        for _ in 0..<5_000 {
            if tw_unix_connect(fd, path) == 0 { return }
            guard errno == EAGAIN else { break }
            usleep(1_000)
        }
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) }
    }

    func send(_ frame: Frame) {
        for bytes in FrameEncoder.encode(frame) { send(bytes) }
    }

    deinit { close(fd) }
}
