import CTaskWatchSocket
import Foundation
import Glibc
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// HTTP clients that send `GET /metrics` and never read the answer, against the real daemon serving a
/// multi-megabyte exposition. Each used to keep a rendered body of its own in the daemon until its
/// connection timed out: 300 of them and a 5.6 MB body took it from 31 MB to 1.67 GB, a scrape meanwhile
/// took seconds, and the memory stayed with the daemon after they had gone.
@Suite(.serialized) struct SlowScraperTests {
    static let series = 8_000
    static let slowClients = 120

    /// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`), or nil.
    static func memory(_ pid: pid_t, _ field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1_024 }
        }
        return nil
    }

    /// An ingest connection from the test process.
    final class Sender {
        let fd: Int32

        init(path: String) throws {
            fd = tw_seqpacket_socket()
            try #require(fd >= 0)
            try #require(tw_unix_connect(fd, path) == 0)
        }

        /// Sends one frame, waiting while the socket buffer is full.
        func send(_ bytes: [UInt8]) throws {
            while bytes.withUnsafeBytes({ tw_send_message(fd, $0.baseAddress, $0.count) }) < 0 {
                try #require(errno == EAGAIN || errno == EINTR, "send: \(errno)")
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&poller, 1, 1_000)
            }
        }

        deinit { close(fd) }
    }

    /// A TCP client with a 4 KiB receive buffer that sends `GET /metrics` and reads nothing.
    static func slowClient(port: UInt16) throws -> Int32 {
        let fd = try connectLoopback(port: port, receiveBufferBytes: 4_096).get()
        let request = Array("GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return fd
    }

    /// Answers to `/metrics` so far, every status together.
    static func metricsAnswers(_ body: String) -> Double {
        parseSamples(body).filter { $0.matches("taskwatch_http_requests_total", ["handler": "/metrics"]) }
            .reduce(0) { $0 + $1.value }
    }

    @Test func clientsThatDoNotReadHoldABoundedAmountOfMemoryAndScrapesGoOn() throws {
        let daemon = try DaemonProcess()
        let sender = try Sender(path: daemon.socketPath)
        try sender.send(
            FrameEncoder.hello(
                Hello(
                    claimedPID: 0, intervalNanoseconds: 1_000_000_000, process: "slow-scrapers", clientVersion: "test",
                    labels: [Label("team", String(repeating: "x", count: 200))])))
        let ids = (1...UInt32(Self.series))
        let declarations = ids.map { id in
            SeriesDeclaration(
                id: id, type: .gauge, name: "big_gauge", help: "h",
                labels: [Label("i", String(id)), Label("pad", String(repeating: "p", count: 300))])
        }
        for frame in FrameEncoder.declare(declarations) { try sender.send(frame) }
        for frame in FrameEncoder.values(ids.map { ValueUpdate(id: $0, value: 1) }) { try sender.send(frame) }
        var first = ""
        #expect(
            eventually(timeout: .seconds(30)) {
                first = (try? daemon.metrics()) ?? ""
                return first.contains("i=\"\(Self.series)\"")
            }, "\(daemon.log)")
        let bodySize = first.utf8.count
        try #require(bodySize > 4_000_000, "an exposition of \(bodySize) bytes")

        // The peak from now on: writing 5 to clear_refs resets VmHWM to the current RSS.
        let pid = daemon.pid
        let reset = (try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)) != nil
        let before = try #require(Self.memory(pid, reset ? "VmHWM" : "VmRSS"))
        let answersBefore = Self.metricsAnswers(try daemon.metrics())

        var slow: [Int32] = []
        defer { for fd in slow { close(fd) } }
        for _ in 0..<Self.slowClients { slow.append(try Self.slowClient(port: daemon.port)) }

        // Each request is answered, in full or with 503, while the clients hold their connections; a
        // scrape gets through meanwhile (one that comes while every body held is younger than 2 s gets
        // 503, so it is asked again).
        var scrapes = 0.0
        var answered = false
        let served = eventually(timeout: .seconds(60), interval: .milliseconds(200)) {
            guard let response = try? fetch(daemon.url("/metrics")) else { return false }
            scrapes += 1
            guard response.status == 200 else { return false }
            #expect(response.text.contains("i=\"\(Self.series)\""))
            // This scrape is counted after its body was rendered, the one before the clients with it.
            answered = Self.metricsAnswers(response.text) - answersBefore - scrapes >= Double(Self.slowClients)
            return answered
        }
        #expect(served && answered, "\(daemon.log)")
        // Every body held is now 2 s old: a scrape takes the place of one and is answered in full.
        usleep(2_200_000)
        let scrape = try fetch(daemon.url("/metrics"))
        #expect(scrape.status == 200)
        #expect(scrape.text.hasSuffix("\n") && scrape.text.contains("i=\"\(Self.series)\""))
        // The clients shut down to make room show where an operator looks for connections that hold places.
        let evicted = parseSamples(scrape.text).first { $0.matches("taskwatch_http_connections_evicted_total", [:]) }
        #expect((evicted?.value ?? 0) >= 1, "no eviction counted")

        let peak = try #require(Self.memory(pid, "VmHWM"))
        // Unbounded, the clients held 120 bodies (540 MB here). Now: a few held, a few being rendered,
        // and whatever the allocator keeps of those.
        #expect(
            peak - before < 20 * bodySize,
            "peak \(peak >> 20) MiB, \((peak - before) >> 20) MiB over \(before >> 20) MiB, body \(bodySize >> 10) KiB")

        // Once they have gone, the memory goes back to the system.
        for fd in slow { close(fd) }
        slow.removeAll()
        var resident = 0
        let returned = eventually(timeout: .seconds(30), interval: .milliseconds(200)) {
            resident = Self.memory(pid, "VmRSS") ?? .max
            return resident < before + 4 * bodySize
        }
        #expect(returned, "RSS \(resident >> 20) MiB after the clients left, \(before >> 20) MiB before they came")
        #expect(try fetch(daemon.url("/metrics")).status == 200)
        withExtendedLifetime(sender) {}
    }
}
