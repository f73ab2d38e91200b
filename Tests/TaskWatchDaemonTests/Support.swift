import Foundation
import Glibc
import Logging
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

/// A response as curl saw it.
struct CurlResponse {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
}

/// Requests `url` with curl; `-i` puts the status line and headers in front of the body.
func curl(_ url: String, _ extraArguments: [String] = []) throws -> CurlResponse {
    let result = try runProcess("/usr/bin/curl", ["-sS", "-i", "--max-time", "20"] + extraArguments + [url])
    #expect(result.status == 0, "curl failed: \(result.errorOutput)")
    return try parseResponse(Array(result.output))
}

struct MalformedResponse: Error {}

/// Splits raw HTTP/1.1 response bytes at the blank line after the headers.
func parseResponse(_ bytes: [UInt8]) throws -> CurlResponse {
    let separator = Array("\r\n\r\n".utf8)
    var start = 0
    while true {
        guard let end = bytes.indices.dropFirst(start).first(where: { bytes[$0...].starts(with: separator) }) else {
            throw MalformedResponse()
        }
        let lines = String(decoding: bytes[start..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw MalformedResponse() }
        // curl shows an interim `100 Continue` block before the real response.
        if status == 100 {
            start = end + separator.count
            continue
        }
        var headers = HTTPHeaders()
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append(
                name: String(line[..<colon]),
                value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return CurlResponse(status: status, headers: headers, body: Array(bytes[(end + separator.count)...]))
    }
}

/// Server TLS settings with a certificate for 127.0.0.1 signed by itself, its files `name`.crt and
/// `name`.key written to `directory`.
func selfSignedTLS(_ name: String = "server", in directory: ScratchDirectory) throws -> HTTPServer.TLS {
    try TestCertificates.selfSigned(name, in: directory, subjectAltName: "IP:127.0.0.1")
    return HTTPServer.TLS(
        certificatePEM: try String(contentsOfFile: directory.file("\(name).crt"), encoding: .utf8),
        keyPEM: try String(contentsOfFile: directory.file("\(name).key"), encoding: .utf8))
}

/// A server on an ephemeral loopback port, stopped when the test ends.
final class TestServer: Sendable {
    let server: HTTPServer
    let port: UInt16
    let connections = HTTPConnectionCounts()

    var base: String { "http://127.0.0.1:\(port)" }

    init(
        threadPoolSize: Int = 2, connectionLimit: Int = HTTPServer.defaultConnectionLimit, tls: HTTPServer.TLS? = nil,
        responseBudget: HTTPResponseBudget.Limits = HTTPResponseBudget.Limits(),
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws {
        let fd = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        port = try #require(ListenAddress.boundPort(of: fd))
        server = try HTTPServer(
            options: HTTPServer.Options(
                listeningSockets: [fd], threadPoolSize: threadPoolSize, connectionLimit: connectionLimit, tls: tls,
                connections: connections, responseBudget: responseBudget),
            handler: handler)
    }

    deinit { server.stop() }
}

/// The inode behind a descriptor, nil once it is closed: tells "closed" apart from "number reused".
func fileIdentity(_ fd: Int32) -> UInt? {
    var status = stat()
    return fstat(fd, &status) == 0 ? UInt(status.st_ino) : nil
}

/// Sample exposition bodies that differ per format, so a test can tell which one was served.
let sampleText = Array("# TYPE swift_tasks gauge\nswift_tasks{process=\"api\",pid=\"1\"} 3\n".utf8)
let sampleOpenMetrics = Array("# TYPE swift_tasks gauge\nswift_tasks{process=\"api\",pid=\"1\"} 3\n# EOF\n".utf8)

func sampleRender(_ format: ExpositionFormat) -> [UInt8] {
    format == .openMetrics ? sampleOpenMetrics : sampleText
}

/// Runs `body` on a thread of its own rather than the cooperative pool. A test whose request is held
/// by the server until the test's next step must not wait on a pool thread: two such tests at once
/// hold both threads of a 2-core pool, and neither can take its next step until curl times out.
final class BackgroundCall<Value: Sendable>: Sendable {
    private let outcome = Mutex<Result<Value, any Error>?>(nil)

    init(_ body: @escaping @Sendable () throws -> Value) {
        Thread { self.finish(Result { try body() }) }.start()
    }

    private func finish(_ result: Result<Value, any Error>) { outcome.withLock { $0 = result } }

    /// Blocks until `body` has returned or thrown.
    func value() throws -> Value {
        while true {
            if let result = outcome.withLock({ $0 }) { return try result.get() }
            usleep(1_000)
        }
    }
}

/// Log events, with their metadata as strings.
final class CapturedLog: Sendable {
    struct Event: Sendable {
        var message: String
        var metadata: [String: String]
    }

    private let captured = Mutex<[Event]>([])

    var events: [Event] { captured.withLock { $0 } }

    /// A logger whose events at `level` and above are captured here.
    func logger(level: Logger.Level = .info) -> Logger {
        Logger(label: "test") { _ in
            var handler = Handler(log: self)
            handler.logLevel = level
            return handler
        }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let metadata = (event.metadata ?? [:]).mapValues { "\($0)" }
            log.captured.withLock { $0.append(Event(message: event.message.description, metadata: metadata)) }
        }
    }
}
