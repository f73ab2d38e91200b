/// The TaskWatch wire protocol, version 1.
///
/// One `SOCK_SEQPACKET` message carries exactly one frame. Every integer is little-endian. The layout
/// is specified in `docs/protocol.md`; this module is its reference implementation and does no I/O.
public enum Wire {
    /// The four bytes `T` `W` `C` `H` that open every frame.
    public static let magic: UInt32 = 0x4843_5754
    /// The protocol version this module speaks.
    public static let version: UInt8 = 1
    /// The size of the fixed header in bytes.
    public static let headerSize = 8
    /// The largest frame a sender may send and a receiver accepts.
    public static let maxFrameSize = 65_536
    /// The longest metric or label name, in bytes.
    public static let maxNameLength = 256
    /// The longest label value, help text or process name, in bytes.
    public static let maxTextLength = 4_096
    /// The most labels a single series or a hello may carry.
    public static let maxLabels = 32
    /// The most bytes of label names and values a hello may carry together. The receiver repeats them
    /// on every line of the connection's series, and keeps them for a gone client's grace period.
    public static let maxHelloLabelBytes = 8_192

    /// The bytes of `labels` that `maxHelloLabelBytes` counts: every name and value, in UTF-8.
    public static func helloLabelBytes(_ labels: [Label]) -> Int {
        labels.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
    }
    /// The most explicit bucket bounds a histogram may declare.
    public static let maxBounds = 256

    /// `text` cut to at most `limit` bytes of UTF-8, never inside a character, so the result is still
    /// valid UTF-8 (a receiver refuses a frame with a broken string whole).
    public static func prefix(_ text: String, utf8Limit limit: Int) -> String {
        let utf8 = text.utf8
        guard utf8.count > limit else { return text }
        var end = utf8.index(utf8.startIndex, offsetBy: limit)
        // Back off continuation bytes (10xxxxxx) to the start of the character that does not fit.
        while end > utf8.startIndex, utf8[end] & 0xC0 == 0x80 { end = utf8.index(before: end) }
        return String(decoding: utf8[utf8.startIndex..<end], as: UTF8.self)
    }
}

/// What a frame says; the byte after the version in the header.
public enum FrameKind: UInt8, Sendable, CaseIterable {
    case hello = 1
    case declare = 2
    case values = 3
    case histograms = 4
    case peaks = 5
    case goodbye = 6
    case retire = 7
}

/// The type of a declared series, as Prometheus knows it.
public enum SeriesType: UInt8, Sendable, CaseIterable {
    case counter = 1
    case gauge = 2
    case histogram = 3

    /// The name used in `# TYPE` lines.
    public var exposedName: String {
        switch self {
        case .counter: "counter"
        case .gauge: "gauge"
        case .histogram: "histogram"
        }
    }
}

/// A label name and value pair.
public struct Label: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The first frame on a connection: who the sender says it is.
public struct Hello: Sendable, Equatable {
    /// The pid the sender believes it has. Informational only: receivers take the pid from the kernel.
    public var claimedPID: UInt32
    /// How often the sender reports, in nanoseconds.
    public var intervalNanoseconds: UInt64
    /// The value of the `process` label.
    public var process: String
    /// The sender's library version, for diagnostics.
    public var clientVersion: String
    /// Labels added to every series of this connection.
    public var labels: [Label]

    public init(
        claimedPID: UInt32,
        intervalNanoseconds: UInt64,
        process: String,
        clientVersion: String,
        labels: [Label] = []
    ) {
        self.claimedPID = claimedPID
        self.intervalNanoseconds = intervalNanoseconds
        self.process = process
        self.clientVersion = clientVersion
        self.labels = labels
    }
}

/// A series the sender will update by `id`.
public struct SeriesDeclaration: Sendable, Hashable {
    public var id: UInt32
    public var type: SeriesType
    public var name: String
    public var help: String
    public var labels: [Label]
    /// Upper bounds of the histogram buckets, strictly increasing and finite; empty for other types.
    public var bounds: [Double]

    public init(
        id: UInt32,
        type: SeriesType,
        name: String,
        help: String,
        labels: [Label] = [],
        bounds: [Double] = []
    ) {
        self.id = id
        self.type = type
        self.name = name
        self.help = help
        self.labels = labels
        self.bounds = bounds
    }
}

/// The absolute current value of a counter or gauge.
public struct ValueUpdate: Sendable, Equatable {
    public var id: UInt32
    public var value: Double

    public init(id: UInt32, value: Double) {
        self.id = id
        self.value = value
    }
}

/// The absolute state of a histogram: per-bucket counts (not cumulative) and the sum of observations.
///
/// `buckets` has one more element than the declared bounds: the last counts observations above the
/// highest bound.
public struct HistogramUpdate: Sendable, Equatable {
    public var id: UInt32
    public var buckets: [UInt64]
    public var sum: Double

    public init(id: UInt32, buckets: [UInt64], sum: Double) {
        self.id = id
        self.buckets = buckets
        self.sum = sum
    }
}

/// The highest value a gauge reached since the previous peaks frame.
public struct PeakSample: Sendable, Equatable {
    public var id: UInt32
    public var value: Double

    public init(id: UInt32, value: Double) {
        self.id = id
        self.value = value
    }
}

/// One decoded frame.
public enum Frame: Sendable, Equatable {
    case hello(Hello)
    case declare([SeriesDeclaration])
    case values([ValueUpdate])
    case histograms([HistogramUpdate])
    case peaks([PeakSample])
    case goodbye
    /// Series ids the sender no longer reports: the receiver stops showing them and forgets the ids,
    /// which may then be declared again.
    case retire([UInt32])

    /// The kind byte of this frame.
    public var kind: FrameKind {
        switch self {
        case .hello: .hello
        case .declare: .declare
        case .values: .values
        case .histograms: .histograms
        case .peaks: .peaks
        case .goodbye: .goodbye
        case .retire: .retire
        }
    }
}
