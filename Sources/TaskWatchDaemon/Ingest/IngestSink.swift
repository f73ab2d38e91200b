/// Identifies one accepted ingest connection for its whole life. Never reused within a daemon run.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { "#\(rawValue)" }
}

/// Who is on the other end of a connection, as the kernel recorded it (`SO_PEERCRED`,
/// `SO_PEERGROUPS`), never as the peer claims.
public struct PeerCredentials: Sendable, Equatable {
    /// The connecting process's pid in the daemon's pid namespace, as of its `connect`; 0 when that
    /// namespace does not show the process (the registry refuses such a peer as `unknown_pid`).
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Of the peer's supplementary groups, the first that is in the sink's `peerGroupsOfInterest`, if
    /// any; never more. `SO_PEERCRED` gives only the primary gid, while a service that joined the
    /// socket's group with `SupplementaryGroups=` has it here; `--ingest.allowed-gids` checks both. The
    /// whole list (`SO_PEERGROUPS`, up to 65,536 gids, 256 KiB) is read only when the sink names some
    /// groups, and is not kept with the connection.
    public var groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// Whether the peer's primary or a supplementary group is in `allowed`.
    func isMember(ofAny allowed: Set<UInt32>) -> Bool {
        allowed.contains(gid) || groups.contains { allowed.contains($0) }
    }
}

/// What the sink wants done with a connection after a frame.
public enum IngestVerdict: Sendable, Equatable {
    case keep
    /// Close the connection; the sink has already counted why.
    case disconnect
}

/// Receives everything the ingest listener reads. All calls come from the listener's single thread, in
/// order, so an implementation needs no locking against itself (only against readers such as scrapes).
public protocol IngestSink: AnyObject {
    /// A connection was accepted. Returning false closes it at once (the sink counts the refusal).
    func connectionOpened(_ id: ConnectionID, peer: PeerCredentials) -> Bool
    /// One message arrived. `truncated` means it was longer than the largest frame and was cut.
    func frameReceived(_ id: ConnectionID, bytes: UnsafeRawBufferPointer, truncated: Bool) -> IngestVerdict
    /// The connection is gone: closed by the peer, by an error, or by a `.disconnect` verdict.
    func connectionClosed(_ id: ConnectionID)
    /// Called at least every `IngestListener.tickInterval`, for time-based work such as grace expiry.
    func tick(nowNanoseconds: UInt64)
    /// The gids whose membership as a supplementary group `connectionOpened` needs to know. Empty (the
    /// default): the listener never reads a peer's supplementary groups. Read once, when the listener
    /// starts.
    var peerGroupsOfInterest: Set<UInt32> { get }
    /// The connection has been open for `IngestListener.Options.helloTimeout`; asked once. Returning
    /// true closes it (the sink counts why), as for a connection that has not said hello by then.
    func helloDeadlinePassed(_ id: ConnectionID) -> Bool
}

extension IngestSink {
    /// No group matters: `PeerCredentials.groups` stays empty.
    public var peerGroupsOfInterest: Set<UInt32> { [] }

    /// No deadline: every connection stays.
    public func helloDeadlinePassed(_ id: ConnectionID) -> Bool { false }
}
