import Foundation
import Glibc
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

/// `taskwatch_http_connections_*` against the real libmicrohttpd: every accepted connection is counted
/// once when it closes, apart by whether the server answered anything on it.
@Suite struct HTTPConnectionCountsTests {
    let web = WebHandler(version: "9.9.9", render: sampleRender)

    /// Waits until every accepted connection has been counted as closed, then returns the counts.
    func settled(_ server: TestServer, accepted: UInt64) throws -> HTTPConnectionCounts.Snapshot {
        let reached = eventually {
            let counts = server.connections.snapshot()
            return counts.accepted == accepted && counts.open == 0
        }
        let counts = server.connections.snapshot()
        try #require(reached, "\(counts)")
        return counts
    }

    @Test func connectionsClosedWithoutAnAnswerAreCountedApart() throws {
        let server = try TestServer(handler: web.handle)
        // Two requests on one keep-alive connection: one connection, answered.
        let both = try runProcess(
            "/usr/bin/curl",
            ["-sS", "-o", "/dev/null", "-o", "/dev/null", server.base + "/-/healthy", server.base + "/"])
        #expect(both.status == 0, "\(both.errorOutput)")
        // Connected, then closed without a byte.
        close(try connectLoopback(port: server.port).get())
        // Answered by libmicrohttpd itself, never reaching the handler.
        let malformed = try rawExchange(port: server.port, Array("NOT HTTP AT ALL\r\n\r\n".utf8))
        #expect(String(decoding: malformed.prefix(12), as: UTF8.self) == "HTTP/1.1 400")
        let longURI = try rawExchange(
            port: server.port, Array("GET /\(String(repeating: "a", count: 100_000)) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(String(decoding: longURI.prefix(12), as: UTF8.self) == "HTTP/1.1 414")

        let counts = try settled(server, accepted: 4)
        #expect(counts.closedAnswered == 1)
        #expect(counts.closedUnanswered == 3)
    }

    /// At the limit, with the only connection in the middle of its request (the handler is held), a new
    /// connection has nowhere to go.
    @Test func aConnectionTurnedAwayAtTheLimitIsCountedOnce() throws {
        let gate = DispatchSemaphore(value: 0)
        let entered = Atomic(false)
        let server = try TestServer(threadPoolSize: 1, connectionLimit: 1) { [web] request in
            entered.store(true, ordering: .releasing)
            gate.wait()
            return web.handle(request)
        }
        let held = try connectLoopback(port: server.port).get()
        defer { close(held) }
        let request = Array("GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
        #expect(request.withUnsafeBytes { send(held, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == request.count)
        #expect(eventually { entered.load(ordering: .acquiring) })

        // Over the limit: the server closes it on arrival, unread, and the peer sees the close.
        let refused = try connectLoopback(port: server.port).get()
        #expect(readUntilClosed(refused).isEmpty)
        close(refused)
        #expect(eventually { server.connections.snapshot().closedUnanswered == 1 })
        #expect(server.connections.snapshot().open == 1)

        // The held request is answered; its close counts as answered.
        gate.signal()
        let response = readUntilClosed(held)
        #expect(String(decoding: response.prefix(12), as: UTF8.self) == "HTTP/1.1 200")
        let counts = try settled(server, accepted: 2)
        #expect(counts.closedAnswered == 1)
        #expect(counts.closedUnanswered == 1)
        #expect(counts.refused == 1)
        #expect(counts.evicted == 0)
    }

    /// At the limit, a connection still sending its request (as a client trickling a byte at a time
    /// does) gives its place to a new one, which is served.
    @Test func aConnectionWithoutARequestInProgressMakesRoomAtTheLimit() throws {
        let server = try TestServer(threadPoolSize: 1, connectionLimit: 1, handler: web.handle)
        let held = try connectLoopback(port: server.port).get()
        defer { close(held) }
        let partial = Array("GET /-/healthy HTTP/1.1\r\nX-a: ".utf8)
        #expect(partial.withUnsafeBytes { send(held, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == partial.count)
        #expect(eventually { server.connections.snapshot().accepted == 1 })

        let response = try rawExchange(
            port: server.port, Array("GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        #expect(String(decoding: response.prefix(12), as: UTF8.self) == "HTTP/1.1 200")
        // The held connection was closed without an answer.
        #expect(readUntilClosed(held).isEmpty)
        let counts = try settled(server, accepted: 2)
        #expect(counts.evicted == 1)
        #expect(counts.refused == 0)
        #expect(counts.closedAnswered == 1)
        #expect(counts.closedUnanswered == 1)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func aFailedTLSHandshakeIsAConnectionClosedUnanswered() throws {
        let server = try TestServer(tls: try selfSignedTLS(in: ScratchDirectory()), handler: web.handle)
        // Plain HTTP to the TLS port: the handshake fails and nothing reaches the handler.
        _ = try rawExchange(port: server.port, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(try curl("https://127.0.0.1:\(server.port)/-/healthy", ["-k"]).status == 200)

        let counts = try settled(server, accepted: 2)
        #expect(counts.closedAnswered == 1)
        #expect(counts.closedUnanswered == 1)
    }
}
