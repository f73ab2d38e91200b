/// Produces `/metrics` bodies: a registry snapshot, each client's `/proc` figures and the daemon's own.
public final class Exporter: Sendable {
    public let registry: Registry
    public let build: BuildInfo

    private let acceptFailures: @Sendable () -> UInt64
    private let webConfigStatus: (@Sendable () -> WebConfigStatus)?
    private let httpRequests: HTTPRequestCounts?
    private let httpConnections: HTTPConnectionCounts?
    private let processStats: @Sendable (Int32) -> ProcessStats?

    /// - Parameters:
    ///   - acceptFailures: connections the listener could not accept for lack of descriptors.
    ///   - webConfigStatus: the latest load of `--web.config.file`; nil when there is none.
    ///   - httpRequests: the HTTP server's answers; nil leaves `taskwatch_http_requests_total` out.
    ///   - httpConnections: the HTTP server's connections; nil leaves `taskwatch_http_connections_*` out.
    public convenience init(
        registry: Registry, build: BuildInfo, acceptFailures: @escaping @Sendable () -> UInt64 = { 0 },
        webConfigStatus: (@Sendable () -> WebConfigStatus)? = nil, httpRequests: HTTPRequestCounts? = nil,
        httpConnections: HTTPConnectionCounts? = nil
    ) {
        self.init(
            registry: registry, build: build, acceptFailures: acceptFailures, webConfigStatus: webConfigStatus,
            httpRequests: httpRequests, httpConnections: httpConnections,
            processStats: { ProcessReader.stats(pid: String($0)) })
    }

    /// As above, with the `/proc` reader replaced (tests count its calls).
    init(
        registry: Registry, build: BuildInfo, acceptFailures: @escaping @Sendable () -> UInt64 = { 0 },
        webConfigStatus: (@Sendable () -> WebConfigStatus)? = nil, httpRequests: HTTPRequestCounts? = nil,
        httpConnections: HTTPConnectionCounts? = nil, processStats: @escaping @Sendable (Int32) -> ProcessStats?
    ) {
        self.processStats = processStats
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
        // /proc is read after the lock is released: a slow read never delays ingest. Once per process,
        // not per connection: one process can hold thousands of connections, each a client here.
        var kernel: [Int: ProcessStats] = [:]
        var byPID: [Int32: ProcessStats?] = [:]
        for (index, client) in snapshot.clients.enumerated() {
            // A gone connection's process may live on as something else: `exec` keeps the pid and the
            // start time, so a review saw the new program's figures under both names for the grace period.
            guard client.connected else { continue }
            let read: ProcessStats?
            if let known = byPID[client.pid] {
                read = known
            } else {
                read = processStats(client.pid)
                byPID[client.pid] = read
            }
            guard let stats = read, stats.startTicks == client.processStartTicks else { continue }
            kernel[index] = stats
        }
        return ExpositionRenderer.render(
            snapshot, format: format, build: build, kernel: kernel, daemon: ProcessReader.stats(pid: "self"),
            webConfig: webConfigStatus?(), httpRequests: httpRequests?.snapshot(),
            httpConnections: httpConnections?.snapshot())
    }
}
