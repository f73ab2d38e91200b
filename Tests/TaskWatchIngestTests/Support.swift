import CTaskWatchSocket
import Foundation
import Synchronization
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire

/// One thing the listener told the sink.
enum SinkEvent: Equatable {
    case opened(ConnectionID, PeerCredentials)
    case frame(ConnectionID, [UInt8], truncated: Bool)
    case closed(ConnectionID)
}

/// Records every sink call under a lock so tests on other threads can inspect them.
final class RecordingSink: IngestSink, Sendable {
    private let events = Mutex<[SinkEvent]>([])
    private let tickCount = Atomic(0)
    private let threads = Mutex<Set<UInt>>([])
    private let acceptsConnections: Bool
    /// Frames whose first byte is this get a `.disconnect` verdict.
    private let disconnectMarker: UInt8?
    /// Whether a connection that sent no frame by its hello deadline is to be closed.
    private let closesSilentConnections: Bool
    private let deadlines = Mutex<[ConnectionID]>([])
    /// Frames whose first byte is this hold the listener thread, once recorded, until `releaseStall()`:
    /// the loop stays busy for as long as a test needs, as under a flood of other connections' frames.
    private let stallMarker: UInt8?
    private let stallsEntered = Atomic(0)
    private let stallReleased = DispatchSemaphore(value: 0)
    let peerGroupsOfInterest: Set<UInt32>

    init(
        acceptsConnections: Bool = true, disconnectMarker: UInt8? = nil, closesSilentConnections: Bool = false,
        stallMarker: UInt8? = nil, peerGroupsOfInterest: Set<UInt32> = []
    ) {
        self.acceptsConnections = acceptsConnections
        self.disconnectMarker = disconnectMarker
        self.closesSilentConnections = closesSilentConnections
        self.stallMarker = stallMarker
        self.peerGroupsOfInterest = peerGroupsOfInterest
    }

    /// Whether the listener thread is held, or was, by a frame carrying `stallMarker`.
    var stalled: Bool { stalls > 0 }

    /// How many `stallMarker` frames have held the listener thread so far.
    var stalls: Int { stallsEntered.load(ordering: .acquiring) }

    /// Lets the listener thread held by a `stallMarker` frame go on.
    func releaseStall() { stallReleased.signal() }

    /// The connections the listener asked about, as their hello deadlines passed.
    var deadlinesPassed: [ConnectionID] { deadlines.withLock { $0 } }

    func helloDeadlinePassed(_ id: ConnectionID) -> Bool {
        deadlines.withLock { $0.append(id) }
        return closesSilentConnections && !frames.contains { $0.id == id }
    }

    var snapshot: [SinkEvent] { events.withLock { $0 } }
    var ticks: Int { tickCount.load(ordering: .relaxed) }
    /// The threads the sink was called on; the listener promises exactly one.
    var callingThreads: Set<UInt> { threads.withLock { $0 } }

    var opened: [(ConnectionID, PeerCredentials)] {
        snapshot.compactMap { if case .opened(let id, let peer) = $0 { (id, peer) } else { nil } }
    }
    var closed: [ConnectionID] {
        snapshot.compactMap { if case .closed(let id) = $0 { id } else { nil } }
    }
    var frames: [(id: ConnectionID, bytes: [UInt8], truncated: Bool)] {
        snapshot.compactMap {
            if case .frame(let id, let bytes, let truncated) = $0 { (id, bytes, truncated) } else { nil }
        }
    }
    var frameCount: Int {
        events.withLock { $0.reduce(0) { if case .frame = $1 { $0 + 1 } else { $0 } } }
    }

    func connectionOpened(_ id: ConnectionID, peer: PeerCredentials) -> Bool {
        noteThread()
        events.withLock { $0.append(.opened(id, peer)) }
        return acceptsConnections
    }

    func frameReceived(_ id: ConnectionID, bytes: UnsafeRawBufferPointer, truncated: Bool) -> IngestVerdict {
        noteThread()
        events.withLock { $0.append(.frame(id, Array(bytes), truncated: truncated)) }
        if let stallMarker, bytes.first == stallMarker {
            stallsEntered.add(1, ordering: .releasing)
            stallReleased.wait()
        }
        if let disconnectMarker, bytes.first == disconnectMarker { return .disconnect }
        return .keep
    }

    func connectionClosed(_ id: ConnectionID) {
        noteThread()
        events.withLock { $0.append(.closed(id)) }
    }

    func tick(nowNanoseconds: UInt64) {
        noteThread()
        tickCount.add(1, ordering: .relaxed)
    }

    private func noteThread() {
        let me = UInt(bitPattern: Int(bitPattern: UInt(pthread_self())))
        threads.withLock { _ = $0.insert(me) }
    }
}

/// A test client on a real SEQPACKET socket.
final class Client {
    let fd: Int32

    init(path: String) throws {
        fd = tw_seqpacket_socket()
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        guard tw_unix_connect(fd, path) == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(.init(rawValue: code) ?? .EIO)
        }
    }

    deinit { close(fd) }

    /// Sends one message, waiting while the socket buffer is full. Returns errno on failure, 0 on success.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int32 {
        while true {
            let sent = bytes.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) }
            if sent >= 0 { return 0 }
            guard errno == EAGAIN || errno == EINTR else { return errno }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&poller, 1, 1_000)
        }
    }

    /// Sends without waiting; returns false when the socket buffer is full.
    func trySend(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) } >= 0
    }

    /// Waits for the daemon to close the connection: true when recv reports end of stream.
    func waitForEndOfStream(timeout: Int32 = 10_000) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, timeout) == 1 else { return false }
        var byte: UInt8 = 0
        var truncated: Int32 = 0
        return tw_recv_message(fd, &byte, 1, &truncated) == 0
    }
}

/// A listener over a fresh socket in a fresh directory, stopped when the test ends.
final class RunningListener {
    let directory = ScratchDirectory()
    let sink: RecordingSink
    let listener: IngestListener
    var path: String { directory.file("ingest.sock") }

    init(sink: RecordingSink = RecordingSink(), options: IngestListener.Options = .init(), start: Bool = true) throws {
        self.sink = sink
        let socket = try IngestSocket.bind(path: directory.file("ingest.sock"))
        listener = try IngestListener(socket: socket, sink: sink, options: options)
        if start { try listener.start() }
    }

    deinit { listener.stop() }
}

extension Frame {
    /// The first frame `encode` produces; the tests only use frames that fit one.
    var bytes: [UInt8] { FrameEncoder.encode(self)[0] }
}
