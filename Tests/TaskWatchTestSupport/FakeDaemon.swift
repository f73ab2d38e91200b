import CTaskWatchSocket
import Foundation
import TaskWatchWire

/// A real `SOCK_SEQPACKET` listener in a temporary directory that decodes what a client sends, for
/// tests of the client's reporter. Read by polling from the test's thread: it runs no thread of its own.
public final class FakeDaemon: @unchecked Sendable {
    // @unchecked: used by one test at a time, from one task.
    public let directory: String
    public let path: String
    private var listener: Int32 = -1
    private var client: Int32 = -1
    /// Every frame read, in order.
    public private(set) var frames: [Frame] = []
    /// When each of `frames` was read.
    public private(set) var frameTimes: [ContinuousClock.Instant] = []
    public private(set) var connections = 0

    /// A daemon whose socket path exists only once `listen()` is called.
    public init() {
        directory = NSTemporaryDirectory() + "taskwatch-test-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/ingest.sock"
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func listen() {
        unlink(path)
        listener = tw_seqpacket_socket()
        precondition(listener >= 0)
        precondition(tw_unix_bind(listener, path) == 0)
        precondition(Glibc.listen(listener, 16) == 0)
    }

    /// Closes the listener and any accepted connection, and removes the socket file.
    public func stop() {
        if client >= 0 { close(client) }
        if listener >= 0 { close(listener) }
        client = -1
        listener = -1
        unlink(path)
    }

    /// Accepts a pending connection (replacing the current one) without blocking.
    @discardableResult
    public func accept() -> Bool {
        guard listener >= 0 else { return false }
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { return false }
        if client >= 0 { close(client) }
        client = fd
        connections += 1
        return true
    }

    /// Accepts every pending connection and closes it at once, as a daemon refusing its clients does.
    /// Returns how many it refused.
    public func refusePending() -> Int {
        guard listener >= 0 else { return 0 }
        var refused = 0
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            guard fd >= 0 else { return refused }
            close(fd)
            refused += 1
        }
    }

    /// Reads every queued frame without blocking; accepts new connections first.
    public func drain() throws {
        while accept() {}
        guard client >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: Wire.maxFrameSize)
        while true {
            var truncated: Int32 = 0
            let count = buffer.withUnsafeMutableBytes { tw_recv_message(client, $0.baseAddress, $0.count, &truncated) }
            if count <= 0 { return }
            frames.append(try FrameDecoder.decode(Array(buffer[0..<count])))
            frameTimes.append(ContinuousClock.now)
        }
    }

    /// Whether the accepted connection reached its end: the client closed it and every frame is read.
    public var clientClosed: Bool {
        guard client >= 0 else { return false }
        var byte: UInt8 = 0
        return recv(client, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    /// Polls until `condition` holds over the frames received so far, or `timeout` passes.
    public func waitFor(timeout: Duration = .seconds(10), _ condition: (FakeDaemon) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            try drain()
            if condition(self) { return true }
            try await Task.sleep(for: .milliseconds(2))
        }
        return false
    }

    /// Drains every millisecond until `condition` holds or `timeout` passes, on the calling thread: unlike
    /// `waitFor`, it enqueues no job on the executor (which would wake a reporter by itself).
    public func poll(timeout: Duration = .seconds(10), _ condition: () -> Bool) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            try drain()
            if condition() { return true }
            usleep(1_000)
        }
        return false
    }

    public func clearFrames() {
        frames = []
        frameTimes = []
    }

    /// The values frames with the time each was read.
    public var timedValues: [(at: ContinuousClock.Instant, updates: [ValueUpdate])] {
        zip(frames, frameTimes).compactMap { frame, at in
            if case .values(let list) = frame { return (at, list) }
            return nil
        }
    }

    public var declarations: [SeriesDeclaration] {
        frames.flatMap { frame -> [SeriesDeclaration] in
            if case .declare(let list) = frame { return list }
            return []
        }
    }

    /// The id of the declared series with `name` and all of `labels`.
    public func id(_ name: String, _ labels: [Label] = []) -> UInt32? {
        declarations.last { declaration in
            declaration.name == name && labels.allSatisfy { declaration.labels.contains($0) }
        }?.id
    }

    /// The values reported for `id`, in order.
    public func values(of id: UInt32) -> [Double] {
        frames.flatMap { frame -> [Double] in
            if case .values(let list) = frame { return list.filter { $0.id == id }.map(\.value) }
            return []
        }
    }

    public func peaks(of id: UInt32) -> [Double] {
        frames.flatMap { frame -> [Double] in
            if case .peaks(let list) = frame { return list.filter { $0.id == id }.map(\.value) }
            return []
        }
    }

    public func histograms(of id: UInt32) -> [HistogramUpdate] {
        frames.flatMap { frame -> [HistogramUpdate] in
            if case .histograms(let list) = frame { return list.filter { $0.id == id } }
            return []
        }
    }

    /// Ids in values, histograms and peaks frames that were not declared, or were retired, on their
    /// connection (which starts at a hello) when the frame came: the daemon would refuse the frame whole.
    public var idsNotLive: [UInt32] {
        var live = Set<UInt32>()
        var notLive: [UInt32] = []
        for frame in frames {
            switch frame {
            case .hello: live = []
            case .declare(let list): live.formUnion(list.map(\.id))
            case .retire(let ids): live.subtract(ids)
            case .values(let list): notLive += list.map(\.id).filter { !live.contains($0) }
            case .histograms(let list): notLive += list.map(\.id).filter { !live.contains($0) }
            case .peaks(let list): notLive += list.map(\.id).filter { !live.contains($0) }
            default: break
            }
        }
        return notLive
    }

    public var hellos: [Hello] {
        frames.compactMap { frame in
            if case .hello(let hello) = frame { return hello }
            return nil
        }
    }
}
