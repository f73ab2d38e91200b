import Foundation
import Glibc
import TaskWatchTestSupport
import Testing

/// `--web.max-connections` against a real daemon and real sockets. Without it, about 1,100 idle
/// connections reached libmicrohttpd 0.9.75's own connection limit, whose path deadlocks both pool
/// threads: `/metrics` and `/-/healthy` failed for good, also after every client had gone, and SIGTERM
/// hung. With it but without eviction, connections holding every place kept scrapes out.
@Suite(.serialized) struct ConnectionLimitTests {
    /// More than libmicrohttpd's default limit (FD_SETSIZE - 4), which was the one that deadlocked.
    static let idleConnections = 1_100

    /// Raises the soft descriptor limit to the hard one when it is too low for `needed` descriptors.
    static func raiseDescriptorLimit(to needed: Int) throws {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        try #require(getrlimit(resource, &limit) == 0)
        if limit.rlim_cur >= rlim_t(needed) { return }
        try #require(limit.rlim_max >= rlim_t(needed), "RLIMIT_NOFILE hard limit \(limit.rlim_max) < \(needed)")
        limit.rlim_cur = limit.rlim_max
        try #require(setrlimit(resource, &limit) == 0)
    }

    @Test func connectionsPastTheLimitTakeThePlaceOfIdleOnesAndTheDaemonKeepsServing() throws {
        try Self.raiseDescriptorLimit(to: Self.idleConnections + 256)
        // Raised before the daemon starts, which inherits the limit: without the fix it accepts them all.
        let daemon = try DaemonProcess(arguments: ["--web.max-connections", "50"])
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        // The start of a request that never ends, as a slow client sends it.
        let partial = Array("GET /metrics HTTP/1.1\r\nX-a: ".utf8)
        for _ in 0..<Self.idleConnections {
            guard case .success(let fd) = connectLoopback(port: daemon.port) else { continue }
            held.append(fd)
            // A connection closed to make room may be closed already: the send then fails, which is fine.
            _ = partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        #expect(held.count == Self.idleConnections)

        // While every place is taken by an unfinished request (none has reached the 10 s idle timeout),
        // a scrape takes the place of the oldest and is answered at once. Before places could be taken,
        // it was closed unanswered until a place freed.
        #expect(try fetch(daemon.url("/-/healthy")).status == 200, "\(daemon.log)")
        let evicted = daemon.value("taskwatch_http_connections_evicted_total", [:])
        let refused = daemon.value("taskwatch_http_connections_refused_total", [:])
        #expect(evicted != nil && refused != nil, "\(daemon.log)")
        // Every connection past the first 50 either took a place or was refused, the scrapes included.
        #expect((evicted ?? 0) + (refused ?? 0) >= Double(Self.idleConnections - 50 + 1))
        #expect((evicted ?? 0) >= 1)
        let closedUnanswered = daemon.value("taskwatch_http_connections_closed_total", ["answered": "false"]) ?? 0
        #expect(closedUnanswered >= (refused ?? 0))

        for fd in held { close(fd) }
        held.removeAll()
        // After every client has gone, everything still works, quickly.
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try fetch(daemon.url("/metrics")).status == 200)
        #expect(try fetch(daemon.url("/-/healthy")).status == 200)
        #expect(clock.now - start < .seconds(3))

        daemon.signal(SIGTERM)
        let status = daemon.child.waitForExit(timeout: .seconds(5))
        #expect(status == 0, "SIGTERM: \(String(describing: status))\n\(daemon.log)")
    }
}
