/// The two text formats `/metrics` speaks.
public enum ExpositionFormat: Sendable, Equatable {
    /// Prometheus text format 0.0.4, the default.
    case text
    /// OpenMetrics 1.0.0, when the scraper's Accept header prefers it.
    case openMetrics

    /// The Content-Type header value for a body in this format. OpenMetrics 1.0.0 names its escaping
    /// scheme, as Prometheus' content negotiation requires of text formats from 1.0.0 on: `underscores`,
    /// which every name here already satisfies (the daemon admits legacy names only), so the body is the
    /// same whatever scheme the scraper asked for.
    public var contentType: String {
        switch self {
        case .text: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        }
    }
}
