extension SeriesType {
    /// The name a series of this type is shown under on `/metrics`: a counter's ends in `_total`,
    /// added when the declared name lacks it (OpenMetrics requires it; promtool's linter asks for it).
    public func exposedName(_ name: String) -> String {
        self == .counter && !name.hasSuffix("_total") ? name + "_total" : name
    }

    /// The names a family of this type and (exposed) name puts on `/metrics` besides its own, in either
    /// format, or that OpenMetrics keeps for it. A histogram writes `_bucket`, `_sum` and `_count`
    /// samples. A counter (named `…_total`) is family `…` without `_total` in OpenMetrics: a gauge or
    /// histogram of that name would be a second family of the same name there, and parsers refuse the
    /// whole exposition. OpenMetrics also gives counters and histograms a `_created` sample; the daemon
    /// writes none, but strict parsers refuse a family that takes the name. The daemon refuses such a
    /// conflict, and the swift-metrics backend does not declare one.
    public func derivedNames(of name: String) -> [String] {
        switch self {
        case .histogram: [name + "_bucket", name + "_sum", name + "_count", name + "_created"]
        case .counter:
            name.hasSuffix("_total") ? [String(name.dropLast(6)), String(name.dropLast(6)) + "_created"] : []
        case .gauge: []
        }
    }
}
