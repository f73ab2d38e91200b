import TaskWatchWire

/// Why a whole frame was refused: `taskwatch_messages_rejected_total{reason}`.
public enum FrameRejection: String, Error, Sendable, CaseIterable {
    // Structural problems found by the wire decoder.
    case truncated, oversize, empty
    case badMagic = "bad_magic"
    case unsupportedVersion = "unsupported_version"
    case unknownKind = "unknown_kind"
    case trailingBytes = "trailing_bytes"
    case invalidUTF8 = "invalid_utf8"
    case tooLong = "too_long"
    case unknownType = "unknown_type"
    case badBounds = "bad_bounds"
    // Problems only the registry can see.
    /// A frame other than hello before the hello.
    case noHello = "no_hello"
    /// A second hello on the same connection.
    case duplicateHello = "duplicate_hello"
    /// A hello whose labels are unusable: an invalid or repeated name, `process` or `pid`, which the
    /// daemon sets itself, or `le`, which histogram buckets set.
    case invalidHello = "invalid_hello"
    /// An update for an id that was never declared on this connection.
    case unknownSeries = "unknown_series"
    /// A value update for a histogram, a histogram update for a counter, peaks for a non-gauge.
    case typeMismatch = "type_mismatch"
    /// A histogram update whose bucket count does not match the declared bounds.
    case bucketMismatch = "bucket_mismatch"
    /// NaN anywhere; a negative or infinite counter; histogram buckets whose total exceeds
    /// `UInt64.max`, which the cumulative buckets could not show. (A histogram sum may be negative or
    /// infinite, as the observations may be.)
    case invalidValue = "invalid_value"
    /// A counter or histogram bucket lower than the value it had on this connection.
    case counterDecrease = "counter_decrease"

    init(_ error: WireError) {
        switch error {
        case .truncated: self = .truncated
        case .oversize: self = .oversize
        case .badMagic: self = .badMagic
        case .unsupportedVersion: self = .unsupportedVersion
        case .unknownKind: self = .unknownKind
        case .trailingBytes: self = .trailingBytes
        case .invalidUTF8: self = .invalidUTF8
        case .tooLong: self = .tooLong
        case .unknownType: self = .unknownType
        case .badBounds: self = .badBounds
        case .empty: self = .empty
        }
    }
}

/// Why a declared series was not admitted: `taskwatch_series_dropped_total{reason}`. The rest of its frame
/// still counts. Refused at a limit that can free up (`canWait`), it waits for room; otherwise later
/// updates for its id are ignored without further counting.
public enum SeriesRejection: String, Error, Sendable, CaseIterable {
    /// The metric name or a label name breaks the Prometheus naming rules.
    case invalidName = "invalid_name"
    /// A label the daemon sets itself (`process`, `pid`), `le` on a histogram, or a label given twice.
    case reservedLabel = "reserved_label"
    /// A name the daemon exposes itself (`taskwatch_*`, `process_*`, the `/proc` series).
    case reservedName = "reserved_name"
    /// The same id declared again differently, or the same name and labels under a second id.
    case duplicateSeries = "duplicate_series"
    /// The name exists with another type or another set of label names.
    case conflict
    /// The connection reached `--ingest.max-series-per-client`.
    case clientLimit = "client_limit"
    /// The daemon reached `--ingest.max-series`.
    case globalLimit = "global_limit"
    /// The connections of the sender's uid together reached `--ingest.max-series-per-uid`.
    case uidLimit = "uid_limit"
    /// The series' name and labels would take the connection past `RegistryLimits.maxLabelBytesPerClient`
    /// or the daemon past `RegistryLimits.maxLabelBytes`.
    case byteLimit = "byte_limit"

    /// The limits whose room can free up while the connection lives: a declaration refused at one of
    /// them waits for room (`Registry.admitWaiting`) instead of being dropped for the connection's
    /// life, and the values reported for it meanwhile are counted by it in
    /// `taskwatch_values_dropped_total{reason}`. The connection's own cap frees only when it retires
    /// series itself; the others also when other connections retire series or go.
    public static let waitingReasons = allCases.filter(\.canWait)

    /// The reasons of `taskwatch_values_dropped_total`: the limits a declaration waits on, and
    /// `conflict` for one kept until the family holding its name goes (`Registry.keepConflicted`).
    public static let valueDroppingReasons = waitingReasons + [.conflict]

    public var canWait: Bool {
        switch self {
        case .clientLimit, .globalLimit, .uidLimit, .byteLimit: true
        case .invalidName, .reservedLabel, .reservedName, .duplicateSeries, .conflict: false
        }
    }
}

/// Why a connection was refused or closed: `taskwatch_clients_rejected_total{reason}`.
public enum ClientRejection: String, Sendable, CaseIterable {
    /// `--ingest.max-clients` connections were already open.
    case maxClients = "max_clients"
    /// The peer's uid or gid is not in the allowed lists.
    case notAllowed = "not_allowed"
    /// The kernel gave the peer's pid as 0: its process is outside the daemon's pid namespace (a daemon
    /// in a container without the host's pids). Its series could not carry a true `pid`, `/proc` says
    /// nothing about it, and every such peer would look like one process.
    case unknownPID = "unknown_pid"
    /// `--ingest.max-clients-per-uid` connections of the peer's uid were already open.
    case uidLimit = "uid_limit"
    /// The lines the daemon adds for the connection (its status and `/proc` series, each with the
    /// hello's labels) would take it past `RegistryLimits.maxLabelBytes`: the hello is refused.
    case byteLimit = "byte_limit"
    /// Too many consecutive refused frames.
    case badFrames = "bad_frames"
    /// No hello within `IngestListener.Options.helloTimeout` of connecting: such a connection would
    /// hold a place under `--ingest.max-clients` for nothing.
    case helloTimeout = "hello_timeout"
    /// accept() failed for lack of file descriptors.
    case noFileDescriptors = "no_file_descriptors"
}
