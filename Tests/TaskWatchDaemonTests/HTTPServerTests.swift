import Foundation
import Glibc
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

@Suite struct HTTPServerTests {
    let web = WebHandler(version: "9.9.9", render: sampleRender)

    @Test func servesMetricsAsText() throws {
        let server = try TestServer(handler: web.handle)
        let response = try curl(server.base + "/metrics")
        #expect(response.status == 200)
        #expect(response.headers["Content-Type"] == ExpositionFormat.text.contentType)
        #expect(response.headers["Content-Encoding"] == nil)
        #expect(response.body == sampleText)
    }

    @Test func gzipBodyDecompressesToThePlainBody() throws {
        let server = try TestServer(handler: web.handle)
        let raw = try curl(server.base + "/metrics", ["-H", "Accept-Encoding: gzip"])
        #expect(raw.status == 200)
        #expect(raw.headers["Content-Encoding"] == "gzip")
        #expect(raw.headers["Vary"]?.contains("Accept-Encoding") == true)
        let unpacked = try runProcess("/usr/bin/gzip", ["-dc"], input: Data(raw.body))
        #expect(unpacked.status == 0)
        #expect(Array(unpacked.output) == sampleText)

        let decoded = try curl(server.base + "/metrics", ["--compressed"])
        #expect(decoded.headers["Content-Encoding"] == "gzip")
        #expect(decoded.body == sampleText)
    }

    @Test func openMetricsWhenAccepted() throws {
        let server = try TestServer(handler: web.handle)
        let response = try curl(
            server.base + "/metrics", ["-H", "Accept: application/openmetrics-text; version=1.0.0"])
        #expect(response.headers["Content-Type"] == ExpositionFormat.openMetrics.contentType)
        #expect(response.body == sampleOpenMetrics)
    }

    @Test func prometheusScrapeHeaders() throws {
        let server = try TestServer(handler: web.handle)
        let accept =
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            + "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        let response = try curl(server.base + "/metrics", ["-H", "Accept: \(accept)", "--compressed"])
        #expect(response.headers["Content-Type"] == ExpositionFormat.openMetrics.contentType)
        #expect(response.body == sampleOpenMetrics)
    }

    @Test func postIsRefusedWith405() throws {
        let server = try TestServer(handler: web.handle)
        let bare = try curl(server.base + "/metrics", ["-X", "POST"])
        #expect(bare.status == 405)
        #expect(bare.headers["Allow"] == "GET, HEAD")
        let withBody = try curl(server.base + "/metrics", ["--data-binary", "payload"])
        #expect(withBody.status == 405)
    }

    @Test func largeBodyIsRefusedWithoutBeingRead() throws {
        let server = try TestServer(handler: web.handle)
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 4 << 20)
        let head =
            "PUT /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: \(body.count)\r\nExpect: 100-continue\r\n\r\n"
        let response = try parseResponse(try rawExchange(port: server.port, Array(head.utf8)))
        #expect(response.status == 405)
        #expect(response.headers["Connection"]?.lowercased() == "close")

        let get = "GET /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
        #expect(try parseResponse(try rawExchange(port: server.port, Array(get.utf8))).status == 413)
    }

    @Test func unknownPathIs404() throws {
        let server = try TestServer(handler: web.handle)
        #expect(try curl(server.base + "/nope").status == 404)
        #expect(try curl(server.base + "/metrics/extra").status == 404)
    }

    @Test func otherEndpoints() throws {
        let server = try TestServer(handler: web.handle)
        let landing = try curl(server.base + "/")
        #expect(landing.status == 200)
        #expect(String(decoding: landing.body, as: UTF8.self).contains("href=\"/metrics\""))
        #expect(try curl(server.base + "/-/healthy").body == Array("Healthy".utf8))
        #expect(try curl(server.base + "/-/ready").body == Array("Ready".utf8))
    }

    @Test func queryStringIsNotPartOfThePath() throws {
        let seen = Mutex<[String]>([])
        let server = try TestServer { request in
            seen.withLock { $0.append(request.path) }
            return HTTPResponse(status: 204)
        }
        #expect(try curl(server.base + "/metrics?name=x").status == 204)
        #expect(seen.withLock { $0 } == ["/metrics"])
    }

    @Test func headersReachTheHandlerCaseInsensitively() throws {
        let seen = Mutex<HTTPRequest?>(nil)
        let server = try TestServer { request in
            seen.withLock { $0 = request }
            return HTTPResponse(status: 200, headers: [("X-Reply", "yes")], body: [1, 2, 3])
        }
        let response = try curl(server.base + "/x", ["-H", "AUTHORIZATION: Basic abc", "-H", "accept: a/b"])
        #expect(response.headers["x-reply"] == "yes")
        #expect(response.body == [1, 2, 3])
        let request = try #require(seen.withLock { $0 })
        #expect(request.method == "GET")
        #expect(request.headers["Authorization"] == "Basic abc")
        #expect(request.headers["Accept"] == "a/b")
        #expect(!request.hasBody)
    }

    @Test func headOnMetricsSendsHeadersOnlyThenCloses() throws {
        let server = try TestServer(handler: web.handle)
        // No `Connection: close` from the client: the server must end the exchange itself, and nothing
        // may follow the headers (not even a last chunk), or a keep-alive client would read those bytes
        // as the next response. rawExchange reads until the server closes.
        for (version, accept, encoding) in [
            ("1.1", "", nil), ("1.1", "Accept-Encoding: gzip\r\n", "gzip"),
            ("1.0", "Accept-Encoding: gzip\r\n", "gzip"),
        ] {
            let request = "HEAD /metrics HTTP/\(version)\r\nHost: test\r\n\(accept)\r\n"
            let raw = try rawExchange(port: server.port, Array(request.utf8))
            let response = try parseResponse(raw)
            #expect(response.status == 200)
            #expect(response.headers["Content-Type"] == ExpositionFormat.text.contentType)
            #expect(response.headers["Content-Encoding"] == encoding)
            #expect(response.headers["Vary"] == "Accept, Accept-Encoding")
            // The length is unknown without rendering, so none is claimed.
            #expect(response.headers["Content-Length"] == nil)
            #expect(response.headers["Transfer-Encoding"] == nil)
            #expect(response.headers["Connection"]?.lowercased() == "close")
            #expect(response.body.isEmpty, "after the headers: \(String(decoding: response.body, as: UTF8.self))")
        }
    }

    @Test func getWorksAfterHeadOnTheSameClient() throws {
        let server = try TestServer(handler: web.handle)
        // One curl run: HEAD, then GET, which must come back whole on a new connection.
        let result = try runProcess(
            "/usr/bin/curl",
            [
                "-sS", "-i", "--max-time", "20", "-I", server.base + "/metrics", "--next", "-sS",
                server.base + "/metrics",
            ])
        #expect(result.status == 0, "\(result.errorOutput)")
        let output = String(decoding: result.output, as: UTF8.self)
        #expect(output.hasPrefix("HTTP/1.1 200"))
        #expect(output.hasSuffix(String(decoding: sampleText, as: UTF8.self)))

        let compressed = try curl(server.base + "/metrics", ["-I", "--compressed"])
        #expect(compressed.status == 200)
        #expect(compressed.headers["Content-Encoding"] == "gzip")
        #expect(compressed.body.isEmpty)
        #expect(try curl(server.base + "/metrics", ["--compressed"]).body == sampleText)
    }

    @Test func headElsewhereKeepsTheExactLength() throws {
        let server = try TestServer(handler: web.handle)
        let request = "HEAD /-/healthy HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        let response = try parseResponse(try rawExchange(port: server.port, Array(request.utf8)))
        #expect(response.status == 200)
        #expect(response.headers["Content-Length"] == String("Healthy".utf8.count))
        #expect(response.body.isEmpty)
    }

    @Test func twentyConcurrentRequests() throws {
        let server = try TestServer(handler: web.handle)
        let urls = (0..<20).map { "\(server.base)/metrics?n=\($0)" }
        let result = try runProcess(
            "/usr/bin/curl",
            ["-sS", "-Z", "--parallel-max", "20", "--max-time", "20", "-w", "%{http_code}\\n"]
                + urls.flatMap { ["-o", "/dev/null", $0] })
        #expect(result.status == 0, "\(result.errorOutput)")
        let codes = result.outputText.split(separator: "\n")
        #expect(codes.count == 20)
        #expect(codes.allSatisfy { $0 == "200" })
    }

    @Test func manySimultaneousClientProcesses() async throws {
        // Separate processes, so connections really overlap rather than being multiplexed by one curl.
        let server = try TestServer { _ in
            usleep(20_000)
            return HTTPResponse(status: 200, body: Array("ok".utf8))
        }
        let base = server.base
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask { try curl("\(base)/slow?\(index)").status }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 20))
    }

    @Test func stopFinishesInFlightRequestsThenClosesThePort() throws {
        let entered = Atomic<Bool>(false)
        let stopping = Atomic<Bool>(false)
        let server = try TestServer { _ in
            entered.store(true, ordering: .releasing)
            // Hold the request until stop() has begun, so it is in flight whatever the scheduling.
            while !stopping.load(ordering: .acquiring) { usleep(1_000) }
            usleep(200_000)
            return HTTPResponse(status: 200, body: Array("late".utf8))
        }
        let base = server.base
        let slow = BackgroundCall { try curl(base + "/slow") }
        while !entered.load(ordering: .acquiring) { usleep(5_000) }
        stopping.store(true, ordering: .releasing)
        server.server.stop()
        let response = try slow.value()
        #expect(response.status == 200)
        #expect(response.body == Array("late".utf8))
        #expect(response.headers["Connection"]?.lowercased() == "close")
        // A child that another test forks at this moment holds a copy of the socket until it execs, so
        // the port may accept for a moment longer: refusal within a second is what counts.
        let refused = eventually(timeout: .seconds(1)) {
            switch connectLoopback(port: server.port) {
            case .success(let fd):
                close(fd)
                return false
            case .failure(let failure): return failure.code == ECONNREFUSED
            }
        }
        #expect(refused, "port \(server.port) still accepts connections after stop()")
        server.server.stop()
    }

    /// A client that sends `request` and then reads only the status line and headers of the answer,
    /// through a 4 KiB receive buffer: what is left of a large body stays with the server.
    final class SlowReader {
        let fd: Int32
        private(set) var status = 0
        private(set) var headers = HTTPHeaders()
        /// Body bytes that came with the headers.
        private(set) var bodyPrefix = 0

        init(port: UInt16, request: String = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n") throws {
            fd = try connectLoopback(port: port, receiveBufferBytes: 4_096).get()
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let bytes = Array(request.utf8)
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            try #require(sent == bytes.count)
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 1_024)
            let separator = Array("\r\n\r\n".utf8)
            while received.firstRange(of: separator) == nil {
                let count = recv(fd, &buffer, buffer.count, 0)
                try #require(count > 0, "no answer")
                received += buffer[..<count]
            }
            let response = try parseResponse(received)
            status = response.status
            headers = response.headers
            bodyPrefix = response.body.count
        }

        /// Reads the rest of the body: the bytes that came before the server closed the connection, or
        /// nil when the whole of `Content-Length` came (or nothing more came for 20 s).
        func readUntilClosed() -> Int? {
            let length = headers["Content-Length"].flatMap { Int($0) } ?? Int.max
            var total = bodyPrefix
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while total < length {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { return count == 0 || errno == ECONNRESET ? total : nil }
                total += count
            }
            return nil
        }

        deinit { close(fd) }
    }

    /// Clients that ask for a large body and do not read it hold no more than the budget: past it,
    /// one is answered 503 with `Retry-After` without a body of any size, and once the bodies held are
    /// 2 s old, the oldest gives way to a new request, which is answered in full. Before the budget,
    /// every such client held a body of its own until the connection timed out: 300 of them took the
    /// daemon from 31 MB to 1.67 GB.
    @Test func clientsThatDoNotReadHoldNoMoreThanTheResponseBudget() throws {
        let size = 4 << 20
        let server = try TestServer(responseBudget: .init(multiple: 3, minimumBytes: 0)) { _ in
            HTTPResponse(status: 200, ownedBody: ResponseBody(copying: [UInt8](repeating: 0x61, count: size)))
        }
        let readers = try (0..<12).map { _ in try SlowReader(port: server.port) }
        let admitted = readers.filter { $0.status == 200 }
        let refused = readers.filter { $0.status == 503 }
        #expect(admitted.count + refused.count == readers.count)
        // Three bodies fit; the others come while those are held and younger than 2 s.
        #expect(admitted.count >= 3)
        #expect(!refused.isEmpty, "\(readers.map(\.status))")
        for reader in refused {
            #expect(["1", "2"].contains(reader.headers["Retry-After"]))
            #expect(reader.headers["Content-Type"] == "text/plain; charset=utf-8")
        }
        #expect(server.server.heldResponseBytes <= 3 * size)

        // Every body held is 2 s old: a new request takes the place of the oldest.
        usleep(2_200_000)
        let scrape = try curl(server.base + "/metrics")
        #expect(scrape.status == 200)
        #expect(scrape.body.count == size)
        #expect(server.server.heldResponseBytes <= 3 * size)
        // The connection that gave way ends short of its body; a kept one would deliver all of it.
        let cutShort = admitted.filter { $0.readUntilClosed() != nil }
        #expect(cutShort.count >= 1, "no slow client was shut down")
    }

    /// Owned bodies below and above the size the budget counts, and an array body above it, arrive whole.
    @Test func bodiesOfEverySizeAndKindArriveWhole() throws {
        let server = try TestServer { request in
            let size = Int(request.path.dropFirst(2)) ?? 0
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
            return request.path.hasPrefix("/o")
                ? HTTPResponse(status: 200, ownedBody: ResponseBody(copying: bytes))
                : HTTPResponse(status: 200, body: bytes)
        }
        for path in ["/o100", "/o100000", "/a100", "/a100000"] {
            let response = try curl(server.base + path)
            #expect(response.status == 200)
            #expect(response.body == (0..<Int(path.dropFirst(2))!).map { UInt8(truncatingIfNeeded: $0) }, "\(path)")
        }
        #expect(eventually { server.server.heldResponseBytes == 0 })
    }

    @Test func servesEveryListeningSocket() throws {
        let first = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        let second = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        let ports = try [first, second].map { try #require(ListenAddress.boundPort(of: $0)) }
        let server = try HTTPServer(options: .init(listeningSockets: [first, second]), handler: web.handle)
        defer { server.stop() }
        for port in ports {
            #expect(try curl("http://127.0.0.1:\(port)/-/healthy").status == 200)
        }
    }

    @Test func singleThreadServerWorks() throws {
        let server = try TestServer(threadPoolSize: 1, handler: web.handle)
        #expect(try curl(server.base + "/metrics").status == 200)
    }

    @Test func invalidOptionsAreReported() throws {
        let fd = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        let identity = fileIdentity(fd)
        #expect(throws: HTTPServer.StartError.self) {
            try HTTPServer(options: .init(listeningSockets: [fd], threadPoolSize: 0)) { _ in HTTPResponse(status: 200) }
        }
        // The server owns the descriptor even when it fails, so it is closed by now. Other tests run
        // in parallel and may reuse the number, hence the inode comparison.
        #expect(fileIdentity(fd) != identity)
        #expect(throws: HTTPServer.StartError.self) {
            try HTTPServer(options: .init(listeningSockets: [])) { _ in HTTPResponse(status: 200) }
        }
    }

    @Test func badCertificateIsAStartError() throws {
        let fd = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        let identity = fileIdentity(fd)
        let tls = HTTPServer.TLS(certificatePEM: "not a certificate", keyPEM: "not a key")
        let error = #expect(throws: HTTPServer.StartError.self) {
            try HTTPServer(options: .init(listeningSockets: [fd], tls: tls)) { _ in HTTPResponse(status: 200) }
        }
        #expect(error?.description.hasPrefix("libmicrohttpd could not start: ") == true)
        // libmicrohttpd's own log line explains the failure.
        #expect(error?.description.contains("no reason given") == false)
        #expect(fileIdentity(fd) != identity)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func servesHTTPS() throws {
        let server = try TestServer(tls: try selfSignedTLS(in: ScratchDirectory()), handler: web.handle)
        let response = try curl("https://127.0.0.1:\(server.port)/metrics", ["-k", "--tlsv1.2"])
        #expect(response.status == 200)
        #expect(response.body == sampleText)
        // TLS 1.1 is excluded by the default priorities.
        let old = try runProcess(
            "/usr/bin/curl", ["-sS", "-k", "--tls-max", "1.1", "-o", "/dev/null", "https://127.0.0.1:\(server.port)/"])
        #expect(old.status != 0)
    }

    @Test func reconfigureNeverRefusesAConnection() throws {
        let server = try TestServer(handler: web.handle)
        let port = server.port
        let done = Atomic<Bool>(false)
        let results = Mutex<(served: Int, failed: [String])>((0, []))
        // A new connection per request, back to back, so some land while the listeners change hands.
        let client = Thread {
            let request = Array("GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
            while !done.load(ordering: .acquiring) {
                let outcome: String
                do {
                    let bytes = try rawExchange(port: port, request)
                    outcome =
                        (try? parseResponse(bytes))?.status == 200
                        ? "" : "\(bytes.count) bytes: \(String(decoding: bytes.prefix(60), as: UTF8.self))"
                } catch { outcome = "\(error)" }
                results.withLock { outcome.isEmpty ? ($0.served += 1) : $0.failed.append(outcome) }
            }
        }
        client.start()
        for _ in 0..<20 {
            try server.server.reconfigure(tls: nil)
            usleep(5_000)
        }
        done.store(true, ordering: .releasing)
        while !client.isFinished { usleep(1_000) }
        let (served, failed) = results.withLock { $0 }
        #expect(failed.isEmpty, "\(failed.count) requests failed: \(failed.prefix(3))")
        #expect(served > 20)
        #expect(try curl(server.base + "/metrics").body == sampleText)
    }

    @Test func reconfigureServesAConnectionThatHasNotSentItsRequestYet() throws {
        let server = try TestServer(handler: web.handle)
        let fd = try connectLoopback(port: server.port).get()
        defer { close(fd) }
        // The old daemon has the connection; no byte of a request has arrived.
        #expect(eventually(timeout: .seconds(10)) { server.server.openConnections == 1 })
        let started = ContinuousClock.now
        let changeover = BackgroundCall { [server] in try server.server.reconfigure(tls: nil) }
        #expect(eventually(timeout: .seconds(10)) { server.server.generation == 2 })
        let request = Array("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == request.count)
        let response = try parseResponse(readUntilClosed(fd))
        #expect(response.status == 200)
        #expect(response.headers["Connection"]?.lowercased() == "close", "\(response.headers)")
        try changeover.value()
        // The changeover ended when that connection closed, not at the 5 s grace period.
        #expect(ContinuousClock.now - started < .seconds(4))
        #expect(server.server.openConnections == 0)
    }

    @Test func reconfigureLetsARequestInFlightFinish() throws {
        let entered = Atomic<Bool>(false)
        let serving = Mutex<HTTPServer?>(nil)
        let server = try TestServer { _ in
            entered.store(true, ordering: .releasing)
            // Hold the request until the new daemons have taken over, whatever the scheduling.
            while (serving.withLock { $0?.generation } ?? 1) < 2 { usleep(1_000) }
            return HTTPResponse(status: 200, body: Array("old".utf8))
        }
        serving.withLock { $0 = server.server }
        // The handler holds the server through `serving`: without this the server was never stopped
        // (its threads and port lived to the end of the run; LeakSanitizer reported the cycle).
        defer { serving.withLock { $0 = nil } }
        let base = server.base
        let slow = BackgroundCall { try curl(base + "/slow") }
        while !entered.load(ordering: .acquiring) { usleep(5_000) }
        try server.server.reconfigure(tls: nil)
        let response = try slow.value()
        #expect(response.status == 200)
        #expect(response.body == Array("old".utf8))
        // The old daemons ask their clients to reconnect, which reaches the new ones.
        #expect(response.headers["Connection"]?.lowercased() == "close", "\(response.headers)")
        #expect(try curl(base + "/slow").status == 200)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func reconfigureSwapsTheCertificateAndKeepsItWhenTheNewOneIsBad() throws {
        let directory = ScratchDirectory()
        let first = try selfSignedTLS("first", in: directory)
        let second = try selfSignedTLS("second", in: directory)
        let server = try TestServer(tls: first, handler: web.handle)
        let url = "https://127.0.0.1:\(server.port)/metrics"
        func verifies(with name: String) throws -> Bool {
            try runProcess(
                "/usr/bin/curl",
                ["-sS", "--max-time", "10", "--cacert", directory.file("\(name).crt"), "-o", "/dev/null", url]
            ).status == 0
        }
        #expect(try verifies(with: "first"))
        #expect(try !verifies(with: "second"))

        try server.server.reconfigure(tls: second)
        #expect(try verifies(with: "second"))
        #expect(try !verifies(with: "first"))

        var mismatched = second
        mismatched.keyPEM = first.keyPEM
        #expect(throws: HTTPServer.StartError.self) { try server.server.reconfigure(tls: mismatched) }
        #expect(try verifies(with: "second"), "a failed reconfigure must leave the server as it was")
    }

    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")),
        arguments: [HTTPServer.ClientCertificates.required, .verifiedIfGiven])
    func clientCertificatesAreVerified(policy: HTTPServer.ClientCertificates) throws {
        let directory = ScratchDirectory()
        let authority = try TestCertificates(in: directory)
        try authority.issue("server", subjectAltName: "IP:127.0.0.1", extendedKeyUsage: "serverAuth")
        try authority.issue(
            "prometheus", subjectAltName: "DNS:prometheus.example,URI:spiffe://example/prometheus",
            extendedKeyUsage: "clientAuth")
        try authority.issue("webserver", subjectAltName: "DNS:web.example", extendedKeyUsage: "serverAuth")
        try authority.selfSigned("stranger")
        func read(_ name: String) throws -> String { try String(contentsOfFile: directory.file(name), encoding: .utf8) }
        let tls = HTTPServer.TLS(
            certificatePEM: try read("server.crt"), keyPEM: try read("server.key"), clientCAPEM: try read("ca.crt"),
            clientCertificates: policy)
        let server = try TestServer(tls: tls, handler: web.handle)
        func status(as client: String?) throws -> Int {
            let identity = client.map { ["--cert", directory.file("\($0).crt"), "--key", directory.file("\($0).key")] }
            let result = try runProcess(
                "/usr/bin/curl",
                [
                    "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                    directory.file("ca.crt"),
                ]
                    + (identity ?? []) + ["https://127.0.0.1:\(server.port)/metrics"])
            return Int(result.outputText) ?? -1
        }
        #expect(try status(as: "prometheus") == 200)
        #expect(try status(as: "stranger") == 403, "a certificate no configured CA issued")
        #expect(try status(as: "webserver") == 403, "a certificate that does not allow client authentication")
        #expect(try status(as: nil) == (policy == .required ? 403 : 200))
        let refused = try curl(
            "https://127.0.0.1:\(server.port)/metrics",
            [
                "--cacert", directory.file("ca.crt"), "--cert", directory.file("stranger.crt"), "--key",
                directory.file("stranger.key"),
            ])
        #expect(refused.body == Array("A trusted client certificate is required.\n".utf8))
        #expect(refused.headers["Connection"]?.lowercased() == "close")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func clientCertificateNeedsAnAllowedSubjectAlternativeName() throws {
        let directory = ScratchDirectory()
        let authority = try TestCertificates(in: directory)
        try authority.issue("server", subjectAltName: "IP:127.0.0.1", extendedKeyUsage: "serverAuth")
        try authority.issue(
            "prometheus", subjectAltName: "DNS:prometheus.example,IP:10.0.0.7", extendedKeyUsage: "clientAuth")
        try authority.issue("grafana", subjectAltName: "email:grafana@example.org", extendedKeyUsage: "clientAuth")
        func read(_ name: String) throws -> String { try String(contentsOfFile: directory.file(name), encoding: .utf8) }
        for (allowed, expected) in [
            (["prometheus.example"], [200, 403]), (["10.0.0.7"], [200, 403]),
            (["grafana@example.org", "nobody.example"], [403, 200]), (["other.example"], [403, 403]),
        ] {
            let tls = HTTPServer.TLS(
                certificatePEM: try read("server.crt"), keyPEM: try read("server.key"),
                clientCAPEM: try read("ca.crt"), clientCertificates: .required, clientAllowedSANs: allowed)
            let server = try TestServer(tls: tls, handler: web.handle)
            let statuses = try ["prometheus", "grafana"].map { client in
                let result = try runProcess(
                    "/usr/bin/curl",
                    [
                        "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                        directory.file("ca.crt"), "--cert", directory.file("\(client).crt"), "--key",
                        directory.file("\(client).key"), "https://127.0.0.1:\(server.port)/metrics",
                    ])
                return Int(result.outputText) ?? -1
            }
            #expect(statuses == expected, "allowed \(allowed)")
        }
    }
}
