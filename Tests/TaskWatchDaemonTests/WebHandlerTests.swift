import Foundation
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

@Suite struct WebHandlerTests {
    let handler = WebHandler(version: "1.2.3", render: sampleRender)

    func get(_ path: String, _ headers: [(String, String)] = [], method: String = "GET") -> HTTPResponse {
        handler.handle(HTTPRequest(method: method, path: path, headers: HTTPHeaders(headers)))
    }

    @Test func metricsDefaultsToPlainText() {
        let response = get("/metrics")
        #expect(response.status == 200)
        #expect(response.header("content-type") == ExpositionFormat.text.contentType)
        #expect(response.header("Content-Encoding") == nil)
        #expect(response.header("Vary")?.contains("Accept-Encoding") == true)
        #expect(response.body == sampleText)
    }

    @Test func metricsInOpenMetricsWhenPreferred() {
        let response = get("/metrics", [("Accept", "application/openmetrics-text")])
        #expect(response.header("Content-Type") == ExpositionFormat.openMetrics.contentType)
        #expect(response.body == sampleOpenMetrics)
    }

    @Test func metricsGzippedWhenAllowed() throws {
        let response = get("/metrics", [("accept-encoding", "gzip")])
        #expect(response.header("Content-Encoding") == "gzip")
        let unpacked = try runProcess("/usr/bin/gzip", ["-dc"], input: Data(response.body))
        #expect(Array(unpacked.output) == sampleText)
        #expect(get("/metrics", [("Accept-Encoding", "gzip;q=0")]).header("Content-Encoding") == nil)
    }

    @Test func configurableTelemetryPath() {
        let custom = WebHandler(telemetryPath: "/probe/metrics", render: sampleRender)
        let request = { (path: String) in custom.handle(HTTPRequest(method: "GET", path: path)) }
        #expect(request("/probe/metrics").body == sampleText)
        #expect(request("/metrics").status == 404)
        #expect(String(decoding: request("/").body, as: UTF8.self).contains("href=\"/probe/metrics\""))
        #expect(WebHandler(telemetryPath: "scrape", render: sampleRender).telemetryPath == "/scrape")
    }

    @Test func landingPageEscapesWhatItShows() {
        let odd = WebHandler(telemetryPath: "/m\"<x>", version: "1.0<script>", render: sampleRender)
        let page = String(decoding: odd.handle(HTTPRequest(method: "GET", path: "/")).body, as: UTF8.self)
        #expect(page.contains("href=\"/m&quot;&lt;x&gt;\""))
        #expect(page.contains("1.0&lt;script&gt;"))
        #expect(!page.contains("<script>"))
    }

    @Test func landingPage() {
        let response = get("/")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/html; charset=utf-8")
        let page = String(decoding: response.body, as: UTF8.self)
        #expect(page.contains("<a href=\"/metrics\">"))
        #expect(page.contains("1.2.3"))
    }

    @Test func health() {
        #expect(
            get("/-/healthy")
                == HTTPResponse(
                    status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array("Healthy".utf8)))
    }

    @Test func readinessFollowsTheClosure() {
        let ready = Atomic<Bool>(false)
        let handler = WebHandler(isReady: { ready.load(ordering: .relaxed) }, render: sampleRender)
        let probe = { handler.handle(HTTPRequest(method: "GET", path: "/-/ready")) }
        #expect(probe().status == 503)
        ready.store(true, ordering: .relaxed)
        #expect(probe().status == 200)
        #expect(probe().body == Array("Ready".utf8))
    }

    @Test(arguments: ["/nope", "/metrics/", "/METRICS", "//metrics", "", "/-/", "/-/healthy/x"])
    func unknownPathsAre404(_ path: String) {
        #expect(get(path).status == 404)
    }

    @Test(arguments: ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "TRACE", "CONNECT"])
    func otherMethodsAre405(_ method: String) {
        let response = get("/metrics", method: method)
        #expect(response.status == 405)
        #expect(response.header("Allow") == "GET, HEAD")
    }

    @Test func headOnMetricsGetsTheGetHeadersWithoutRendering() {
        let renders = Atomic<Int>(0)
        let counting = WebHandler { format in
            renders.add(1, ordering: .relaxed)
            return sampleRender(format)
        }
        for headers in [
            [], [("Accept-Encoding", "gzip")], [("Accept", "application/openmetrics-text; version=1.0.0")],
            [("Accept", "application/openmetrics-text"), ("Accept-Encoding", "deflate, gzip;q=0.5")],
        ] {
            let head = counting.handle(HTTPRequest(method: "HEAD", path: "/metrics", headers: HTTPHeaders(headers)))
            #expect(head.status == 200)
            #expect(head.omitsBody)
            #expect(head.body.isEmpty && head.ownedBody == nil)
            #expect(renders.load(ordering: .relaxed) == 0, "HEAD rendered with \(headers)")
            let get = counting.handle(HTTPRequest(method: "GET", path: "/metrics", headers: HTTPHeaders(headers)))
            #expect(!get.omitsBody)
            #expect(head.headers.elementsEqual(get.headers) { $0 == $1 }, "\(head.headers) vs \(get.headers)")
            renders.store(0, ordering: .relaxed)
        }
    }

    @Test func headElsewhereAnswersLikeGet() {
        for path in ["/", "/-/healthy", "/-/ready", "/nope"] {
            #expect(get(path, method: "HEAD") == get(path))
        }
    }

    @Test func requestBodiesAreRefused() {
        let response = handler.handle(HTTPRequest(method: "GET", path: "/metrics", hasBody: true))
        #expect(response.status == 413)
    }

    @Test func renderIsNotCalledForOtherPaths() {
        let renders = Atomic<Int>(0)
        let counting = WebHandler { format in
            renders.add(1, ordering: .relaxed)
            return sampleRender(format)
        }
        for path in ["/", "/-/healthy", "/-/ready", "/x"] {
            _ = counting.handle(HTTPRequest(method: "GET", path: path))
        }
        _ = counting.handle(HTTPRequest(method: "POST", path: "/metrics"))
        #expect(renders.load(ordering: .relaxed) == 0)
        _ = counting.handle(HTTPRequest(method: "GET", path: "/metrics"))
        #expect(renders.load(ordering: .relaxed) == 1)
    }

    @Test func authorizationRunsFirst() {
        let denial = HTTPResponse(status: 401, headers: [("WWW-Authenticate", "Basic realm=\"taskwatch\"")])
        let guarded = WebHandler(
            authorize: { $0.headers["Authorization"] == "Basic dTpw" ? nil : denial }, render: sampleRender)
        #expect(guarded.handle(HTTPRequest(method: "GET", path: "/metrics")) == denial)
        #expect(guarded.handle(HTTPRequest(method: "POST", path: "/nope")) == denial)
        let allowed = HTTPRequest(
            method: "GET", path: "/metrics", headers: HTTPHeaders([("authorization", "Basic dTpw")]))
        #expect(guarded.handle(allowed).status == 200)
    }

    @Test func repeatedHeadersJoin() {
        let headers = HTTPHeaders([("Accept", "text/plain;q=0.1"), ("ACCEPT", "application/openmetrics-text")])
        #expect(headers["accept"] == "text/plain;q=0.1, application/openmetrics-text")
        #expect(
            handler.handle(HTTPRequest(method: "GET", path: "/metrics", headers: headers)).body == sampleOpenMetrics)
        #expect(headers["Missing"] == nil)
    }
}

@Suite struct WebHandlerOwnedBodyTests {
    let text: [UInt8] = Array("# TYPE a gauge\na 1\n".utf8)

    var handler: WebHandler {
        let text = text
        return WebHandler(render: { _ in [] }, renderBody: { _ in ResponseBody(copying: text) })
    }

    @Test func plainScrapesHandOverTheRenderedBodyUncopied() {
        let response = handler.handle(HTTPRequest(method: "GET", path: "/metrics"))
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(response.ownedBody?.bytes == text)
    }

    @Test func headDoesNotRenderTheBody() {
        let renders = Atomic<Int>(0)
        let text = text
        let counting = WebHandler(
            render: { _ in [] },
            renderBody: { _ in
                renders.add(1, ordering: .relaxed)
                return ResponseBody(copying: text)
            })
        let head = counting.handle(HTTPRequest(method: "HEAD", path: "/metrics"))
        #expect(head.omitsBody && head.ownedBody == nil)
        #expect(renders.load(ordering: .relaxed) == 0)
    }

    @Test func gzipScrapesCompressTheRenderedBody() throws {
        let response = handler.handle(
            HTTPRequest(method: "GET", path: "/metrics", headers: HTTPHeaders([("Accept-Encoding", "gzip")])))
        #expect(response.header("Content-Encoding") == "gzip")
        #expect(response.ownedBody == nil)
        #expect(try Gzip.compress(text) == response.body)
    }
}
