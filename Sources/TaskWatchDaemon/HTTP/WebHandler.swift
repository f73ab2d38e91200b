/// Routes requests to the daemon's endpoints. Knows nothing of the server underneath, so it is tested
/// with plain values.
public struct WebHandler: Sendable {
    /// Where `/metrics` lives (`--web.telemetry-path`). Always begins with `/`.
    public let telemetryPath: String
    public let version: String
    /// zlib level for compressed scrapes.
    public let gzipLevel: Int32
    private let isReady: @Sendable () -> Bool
    private let healthProblem: @Sendable () -> String?
    private let authorize: @Sendable (HTTPRequest) -> HTTPResponse?
    private let render: @Sendable (ExpositionFormat) -> [UInt8]
    private let renderBody: (@Sendable (ExpositionFormat) -> ResponseBody)?

    /// - Parameters:
    ///   - isReady: answers `/-/ready`.
    ///   - healthProblem: answers `/-/healthy`: nil is healthy, a text says what is wrong.
    ///   - authorize: runs before routing; a response refuses the request (for example a 401 with
    ///     `WWW-Authenticate`), nil lets it through.
    ///   - render: produces the metrics body in the negotiated format.
    public init(
        telemetryPath: String = "/metrics", version: String = TaskWatchDaemonInfo.version, gzipLevel: Int32 = 1,
        isReady: @escaping @Sendable () -> Bool = { true },
        healthProblem: @escaping @Sendable () -> String? = { nil },
        authorize: @escaping @Sendable (HTTPRequest) -> HTTPResponse? = { _ in nil },
        render: @escaping @Sendable (ExpositionFormat) -> [UInt8],
        renderBody: (@Sendable (ExpositionFormat) -> ResponseBody)? = nil
    ) {
        self.telemetryPath = Self.normalizedTelemetryPath(telemetryPath)
        self.version = version
        self.gzipLevel = gzipLevel
        self.isReady = isReady
        self.healthProblem = healthProblem
        self.authorize = authorize
        self.render = render
        self.renderBody = renderBody
    }

    /// `path` as the telemetry path is served: with a leading `/`.
    public static func normalizedTelemetryPath(_ path: String) -> String {
        path.hasPrefix("/") ? path : "/" + path
    }

    /// Answers one request. HEAD gets the GET response, whose body the server leaves off; on the
    /// telemetry path it gets the GET headers without the metrics being rendered.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        // Authorization first, so an unauthenticated client learns nothing, not even which paths exist.
        if let refusal = authorize(request) { return refusal }
        guard request.method == "GET" || request.method == "HEAD" else {
            return Self.plain(405, "Method Not Allowed\n", extra: [("Allow", "GET, HEAD")])
        }
        if request.hasBody { return Self.plain(413, "Request bodies are not accepted\n") }
        switch request.path {
        case telemetryPath: return metrics(request)
        case "/": return landingPage()
        case "/-/healthy":
            // A stalled part makes an orchestrator's liveness probe restart the daemon, as the
            // systemd watchdog does.
            if let problem = healthProblem() { return Self.plain(503, "Unhealthy: \(problem)\n") }
            return Self.plain(200, "Healthy")
        case "/-/ready": return isReady() ? Self.plain(200, "Ready") : Self.plain(503, "Not ready")
        default: return Self.plain(404, "Not Found\n")
        }
    }

    private func metrics(_ request: HTTPRequest) -> HTTPResponse {
        let format = ContentNegotiation.exposition(accept: request.headers["Accept"])
        // The body depends on both headers, so caches must key on both.
        var headers = [("Content-Type", format.contentType), ("Vary", "Accept, Accept-Encoding")]
        let gzip = ContentNegotiation.acceptsGzip(acceptEncoding: request.headers["Accept-Encoding"])
        // A HEAD would pay for a full render (and compression) only for the server to drop the body.
        if request.method == "HEAD" {
            if gzip { headers.append(("Content-Encoding", "gzip")) }
            return HTTPResponse(status: 200, headers: headers, omitsBody: true)
        }
        if let renderBody {
            let body = renderBody(format)
            if gzip, let compressed = try? body.withUnsafeBytes({ try Gzip.compress($0, level: gzipLevel) }) {
                headers.append(("Content-Encoding", "gzip"))
                return HTTPResponse(status: 200, headers: headers, body: compressed)
            }
            return HTTPResponse(status: 200, headers: headers, ownedBody: body)
        }
        let body = render(format)
        if gzip, let compressed = try? Gzip.compress(body, level: gzipLevel) {
            headers.append(("Content-Encoding", "gzip"))
            return HTTPResponse(status: 200, headers: headers, body: compressed)
        }
        // A compression failure serves the plain body: a scrape must not fail over an optimization.
        return HTTPResponse(status: 200, headers: headers, body: body)
    }

    private func landingPage() -> HTTPResponse {
        let path = Self.escapeHTML(telemetryPath)
        let html = """
            <!DOCTYPE html>
            <html lang="en">
            <head><meta charset="utf-8"><title>TaskWatch</title></head>
            <body>
            <h1>TaskWatch</h1>
            <p>Swift concurrency task metrics for Prometheus. Version \(Self.escapeHTML(version)).</p>
            <ul><li><a href="\(path)">Metrics</a></li></ul>
            </body>
            </html>

            """
        return HTTPResponse(
            status: 200, headers: [("Content-Type", "text/html; charset=utf-8")], body: Array(html.utf8))
    }

    private static func plain(_ status: Int, _ text: String, extra: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(
            status: status, headers: [("Content-Type", "text/plain; charset=utf-8")] + extra, body: Array(text.utf8))
    }

    private static func escapeHTML(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
