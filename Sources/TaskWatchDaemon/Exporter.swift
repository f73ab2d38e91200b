/// Produces `/metrics` bodies: a registry snapshot, each client's `/proc` figures and the daemon's own.
public final class Exporter: Sendable {
    public let registry: Registry
    public let build: BuildInfo

    private let acceptFailures: @Sendable () -> UInt64
    private let webConfigStatus: (@Sendable () -> WebConfigStatus)?
    private let httpRequests: HTTPRequestCounts?
    private let httpConnections: HTTPConnectionCounts?

    /// - Parameters:
    ///   - acceptFailures: connections the listener could not accept for lack of descriptors.
    ///   - webConfigStatus: the latest load of `--web.config.file`; nil when there is none.
    ///   - httpRequests: the HTTP server's answers; nil leaves `taskwatch_http_requests_total` out.
    ///   - httpConnections: the HTTP server's connections; nil leaves `taskwatch_http_connections_*` out.
    public init(
        registry: Registry, build: BuildInfo, acceptFailures: @escaping @Sendable () -> UInt64 = { 0 },
        webConfigStatus: (@Sendable () -> WebConfigStatus)? = nil, httpRequests: HTTPRequestCounts? = nil,
        httpConnections: HTTPConnectionCounts? = nil
    ) {
        self.registry = registry
        self.build = build
        self.acceptFailures = acceptFailures
        self.webConfigStatus = webConfigStatus
        self.httpRequests = httpRequests
        self.httpConnections = httpConnections
    }

    /// Renders the whole exposition in `format` as an array. Safe to call from many threads at once.
    public func render(_ format: ExpositionFormat) -> [UInt8] {
        renderBody(format).bytes
    }

    /// Renders the whole exposition in `format` into memory the HTTP server sends without copying.
    public func renderBody(_ format: ExpositionFormat) -> ResponseBody {
        var snapshot = registry.snapshot()
        snapshot.stats.rejectedClients[.noFileDescriptors, default: 0] += acceptFailures()
        // /proc is read after the lock is released: a slow read never delays ingest.
        var kernel: [Int: ProcessStats] = [:]
        for (index, client) in snapshot.clients.enumerated() {
            guard let stats = ProcessReader.stats(pid: String(client.pid)),
                stats.startTicks == client.processStartTicks
            else { continue }
            kernel[index] = stats
        }
        return ExpositionRenderer.render(
            snapshot, format: format, build: build, kernel: kernel, daemon: ProcessReader.stats(pid: "self"),
            webConfig: webConfigStatus?(), httpRequests: httpRequests?.snapshot(),
            httpConnections: httpConnections?.snapshot())
    }
}
