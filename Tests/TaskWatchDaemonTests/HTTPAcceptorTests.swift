import Foundation
import Glibc
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

/// The accepting thread when descriptors run out (see `runAloneInChildProcess`).
@Suite struct HTTPAcceptorTests {
    static let childVariable = "TASKWATCH_TEST_HTTP_DESCRIPTOR_CHILD"

    @Test func acceptingPausesAndRecoversWhenDescriptorsRunOut() throws {
        let child = try runAloneInChildProcess("httpDescriptorExhaustionScenario", enabledBy: Self.childVariable)
        #expect(child.passed, "\(child.output)")
    }

    @Test(.enabled(if: getenv(childVariable) != nil, "runs in the child that the test above starts"))
    func httpDescriptorExhaustionScenario() throws {
        let log = Mutex<[String]>([])
        let listening = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        let port = try #require(ListenAddress.boundPort(of: listening))
        let server = try HTTPServer(
            options: HTTPServer.Options(
                listeningSockets: [listening], errorLog: { message in log.withLock { $0.append(message) } }),
            handler: { _ in HTTPResponse(status: 200, body: Array("ok".utf8)) })
        defer { server.stop() }
        // Open before the limit drops, and still served while accepting is paused.
        let early = try connectLoopback(port: port).get()
        defer { close(early) }
        #expect(eventually { server.openConnections == 1 })

        let exhaustion = DescriptorExhaustion()
        #expect(exhaustion.filled)
        let late = try connectLoopback(port: port).get()
        defer { close(late) }
        #expect(eventually { log.withLock { $0.contains { $0.hasPrefix("accepting HTTP connections paused") } } })
        #expect(try exchange(early).status == 200)

        exhaustion.release()
        // Accepting resumes after the pause, and the client that waited in the backlog is served.
        #expect(try exchange(late).status == 200)
    }
}

/// Sends a GET on the connected socket `fd` and reads one response.
private func exchange(_ fd: Int32) throws -> CurlResponse {
    let request = Array("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    return try parseResponse(readUntilClosed(fd))
}
