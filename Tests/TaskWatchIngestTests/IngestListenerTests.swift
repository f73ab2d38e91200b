import CTaskWatchSocket
import Foundation
import Synchronization
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@Suite struct IngestListenerTests {
    @Test func manyClientsConnectAndTheirFramesArriveInOrderWithKernelCredentials() throws {
        let running = try RunningListener()
        let clients = try (0..<20).map { _ in try Client(path: running.path) }
        for (index, client) in clients.enumerated() {
            for sequence in 0..<5 {
                let frame = Frame.values([ValueUpdate(id: UInt32(index), value: Double(sequence))])
                #expect(client.send(frame.bytes) == 0)
            }
        }
        #expect(eventually { running.sink.frameCount == 100 })

        let opened = running.sink.opened
        #expect(opened.count == 20)
        #expect(Set(opened.map(\.0)).count == 20)
        for (_, peer) in opened {
            #expect(peer == PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid()))
        }
        var perConnection: [ConnectionID: [Double]] = [:]
        for frame in running.sink.frames {
            #expect(!frame.truncated)
            guard case .values(let updates) = try FrameDecoder.decode(frame.bytes) else {
                Issue.record("not a values frame")
                continue
            }
            perConnection[frame.id, default: []].append(updates[0].value)
        }
        #expect(perConnection.count == 20)
        #expect(perConnection.values.allSatisfy { $0 == [0, 1, 2, 3, 4] })
        #expect(running.sink.callingThreads.count == 1)
    }

    @Test func messageOverTheFrameLimitArrivesTruncated() throws {
        let running = try RunningListener()
        let client = try Client(path: running.path)
        #expect(client.send([UInt8](repeating: 0xAB, count: 70_000)) == 0)
        #expect(client.send([UInt8](repeating: 0xCD, count: Wire.maxFrameSize)) == 0)
        #expect(eventually { running.sink.frameCount == 2 })

        let frames = running.sink.frames
        #expect(frames[0].truncated)
        #expect(frames[0].bytes.count == IngestListener.receiveCapacity)
        #expect(!frames[1].truncated)
        #expect(frames[1].bytes.count == Wire.maxFrameSize)
        #expect(frames[1].bytes.allSatisfy { $0 == 0xCD })
    }

    @Test func closingTheClientYieldsConnectionClosedAfterItsFrames() throws {
        let running = try RunningListener()
        var client: Client? = try Client(path: running.path)
        client!.send(Frame.goodbye.bytes)
        client = nil
        #expect(eventually { running.sink.closed.count == 1 })

        let events = running.sink.snapshot
        #expect(events.count == 3)
        guard case .opened(let id, _) = events[0] else {
            Issue.record("first event is not opened")
            return
        }
        #expect(events[1] == .frame(id, Frame.goodbye.bytes, truncated: false))
        #expect(events[2] == .closed(id))
    }

    @Test func disconnectVerdictClosesThePeer() throws {
        let running = try RunningListener(sink: RecordingSink(disconnectMarker: 0xFF))
        let client = try Client(path: running.path)
        let bystander = try Client(path: running.path)
        #expect(client.send([0xFF, 1, 2, 3]) == 0)
        #expect(client.waitForEndOfStream())
        #expect(eventually { running.sink.closed.count == 1 })
        #expect(client.send(Frame.goodbye.bytes) != 0)

        #expect(bystander.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frameCount == 2 })
        #expect(running.sink.closed.count == 1)
    }

    @Test func aQueuedBacklogArrivesInOrderAcrossBatchesThenTheClose() throws {
        // Queued before the listener starts, so the frames come many to a `recvmmsg` call, with an
        // oversize message among them and the end of the stream right behind the last one.
        let running = try RunningListener(start: false)
        var client: Client? = try Client(path: running.path)
        var sent: [[UInt8]] = []
        for index in 0..<200 {
            let bytes =
                index == 40
                ? [UInt8](repeating: 0xAB, count: 70_000)
                : Frame.values([ValueUpdate(id: 1, value: Double(index))]).bytes
            guard client!.trySend(bytes) else { break }
            sent.append(bytes)
        }
        try #require(sent.count > 40, "only \(sent.count) messages fit in the socket buffer")
        client = nil
        try running.listener.start()
        #expect(eventually { running.sink.closed.count == 1 })

        let frames = running.sink.frames
        try #require(frames.count == sent.count)
        for (index, frame) in frames.enumerated() {
            if index == 40 {
                #expect(frame.truncated && frame.bytes.count == IngestListener.receiveCapacity)
            } else {
                #expect(!frame.truncated && frame.bytes == sent[index], "frame \(index)")
            }
        }
    }

    @Test func aDisconnectVerdictMidBatchDropsWhatFollowsIt() throws {
        let running = try RunningListener(sink: RecordingSink(disconnectMarker: 0xFF), start: false)
        let client = try Client(path: running.path)
        for index in 0..<10 {
            let bytes = index == 5 ? [0xFF, 1, 2, 3] : Frame.values([ValueUpdate(id: 1, value: Double(index))]).bytes
            #expect(client.send(bytes) == 0)
        }
        try running.listener.start()
        #expect(client.waitForEndOfStream())
        #expect(eventually { running.sink.closed.count == 1 })
        // The five before it and the marker itself; the four after it are never read.
        #expect(running.sink.frameCount == 6)
        #expect(running.sink.frames.last?.bytes == [0xFF, 1, 2, 3])
    }

    @Test func refusedConnectionIsClosedWithoutConnectionClosed() throws {
        let running = try RunningListener(sink: RecordingSink(acceptsConnections: false))
        let client = try Client(path: running.path)
        #expect(client.waitForEndOfStream())
        #expect(running.sink.opened.count == 1)
        #expect(running.sink.closed.isEmpty)
    }

    @Test func theSinkIsAskedAboutEachConnectionAtItsHelloDeadlineAndMayCloseIt() throws {
        let running = try RunningListener(
            sink: RecordingSink(closesSilentConnections: true),
            options: .init(tickInterval: .milliseconds(10), helloTimeout: .milliseconds(200)))
        let silent = try Client(path: running.path)
        let talking = try Client(path: running.path)
        #expect(talking.send(Frame.goodbye.bytes) == 0)
        #expect(silent.waitForEndOfStream(timeout: 5_000))
        #expect(eventually { running.sink.deadlinesPassed.count == 2 })
        // Only the silent one is closed; the other stays open and is not asked again.
        #expect(running.sink.closed.count == 1)
        #expect(talking.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frameCount == 2 })
        #expect(running.sink.deadlinesPassed.count == 2)
    }

    /// Under a flood, a connection's hello can arrive in time and wait unread behind the other
    /// connections' frames until after its deadline. Here one frame holds the listener thread instead
    /// (the marker), so the order is fixed: `late` is accepted, the thread is held, `late`'s hello is
    /// queued, and the deadline passes before the thread can read it.
    @Test func aHelloQueuedBeforeItsDeadlineKeepsTheConnectionThoughTheLoopWasBusy() throws {
        let timeout = 500
        let running = try RunningListener(
            sink: RecordingSink(closesSilentConnections: true, stallMarker: 0xEE),
            options: .init(tickInterval: .milliseconds(10), helloTimeout: .milliseconds(timeout)))
        // Whatever fails, `stop()` must not wait for a thread held forever.
        defer { running.sink.releaseStall() }
        let busy = try Client(path: running.path)
        // Not silent itself, whenever its own deadline comes.
        #expect(busy.send(Frame.values([ValueUpdate(id: 1, value: 1)]).bytes) == 0)
        #expect(eventually { running.sink.frameCount == 1 })
        let late = try Client(path: running.path)
        #expect(eventually { running.sink.opened.count == 2 })
        let lateID = running.sink.opened[1].0
        #expect(busy.send([0xEE]) == 0)
        #expect(eventually { running.sink.stalled })
        // Otherwise this thread was too slow, and `late` was rightly judged silent before the stall.
        try #require(!running.sink.deadlinesPassed.contains(lateID))

        let hello = Frame.hello(
            Hello(claimedPID: UInt32(getpid()), intervalNanoseconds: 10_000_000, process: "late", clientVersion: "1"))
        #expect(late.send(hello.bytes) == 0)
        usleep(UInt32(timeout + 200) * 1_000)
        running.sink.releaseStall()

        #expect(eventually { running.sink.deadlinesPassed.contains(lateID) })
        try #require(running.sink.closed.isEmpty, "the hello was queued in time")
        #expect(running.sink.frames.first { $0.id == lateID }?.bytes == hello.bytes)
        #expect(late.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frames.last?.bytes == Frame.goodbye.bytes })
        #expect(running.sink.closed.isEmpty)
    }

    /// One round of the loop serves every connection with frames queued, up to 64 frames each: seconds
    /// under a flood of large frames. The liveness heartbeat is beaten for each connection served, not
    /// only between rounds, so a thread busy for longer than the stall limit is not taken for a stalled
    /// one. Here two connections' frames wait for the same round, and each one holds the thread.
    @Test func theHeartbeatGoesOnWithinARound() throws {
        let running = try RunningListener(
            sink: RecordingSink(stallMarker: 0xEE), options: .init(tickInterval: .milliseconds(10)))
        defer { for _ in 0..<3 { running.sink.releaseStall() } }
        // Held by the first, the thread finds the other two ready together in its next round.
        #expect(try beatBetweenTheLastTwo(of: running, heldFor: 0), "no beat between the two connections of one round")
    }

    /// The hello deadline sweep reads each connection whose deadline passed (up to 64 frames), after a
    /// round, so under the flood that delays hellos it is a round of its own: every connection accepted
    /// in one burst reaches its deadline in the same sweep, and a flood's senders have frames queued. It
    /// beats the heartbeat after each connection as the round does. Here two connections' frames wait
    /// for the sweep (queued while the thread is held, their deadlines passing meanwhile), and each one
    /// holds the thread.
    @Test func theHeartbeatGoesOnWithinTheHelloDeadlineSweep() throws {
        let timeout = 300
        let running = try RunningListener(
            sink: RecordingSink(stallMarker: 0xEE),
            options: .init(tickInterval: .milliseconds(10), helloTimeout: .milliseconds(timeout)))
        defer { for _ in 0..<3 { running.sink.releaseStall() } }
        let beat = try beatBetweenTheLastTwo(of: running, heldFor: timeout + 100)
        // Both held the thread in the sweep, each read just before its deadline was judged, not in a round.
        #expect(running.sink.deadlinesPassed == [running.sink.opened[0].0, running.sink.opened[1].0])
        #expect(beat, "no beat between the two connections of one sweep")
    }

    /// Opens three connections; holds the listener thread in a stall frame of the first, queues one on
    /// each of the other two, and lets it go after `milliseconds`: the thread reads the two in one run.
    /// Whether the heartbeat was beaten between them; the thread is held in the third stall on return.
    private func beatBetweenTheLastTwo(of running: RunningListener, heldFor milliseconds: Int) throws -> Bool {
        let clients = try (0..<3).map { _ in try Client(path: running.path) }
        #expect(eventually { running.sink.opened.count == 3 })
        #expect(clients[0].send([0xEE]) == 0)
        #expect(eventually { running.sink.stalls == 1 })
        #expect(clients[1].send([0xEE]) == 0)
        #expect(clients[2].send([0xEE]) == 0)
        usleep(UInt32(milliseconds) * 1_000)
        running.sink.releaseStall()
        #expect(eventually { running.sink.stalls == 2 })
        usleep(50_000)
        let released = Heartbeat.now()
        running.sink.releaseStall()
        try #require(eventually { running.sink.stalls == 3 })
        return running.listener.heartbeat.lastBeatNanoseconds >= released
    }

    @Test func tickRunsWithoutTraffic() throws {
        let running = try RunningListener(options: .init(tickInterval: .milliseconds(10)))
        #expect(eventually { running.sink.ticks >= 5 })
    }

    @Test func stopClosesConnectionsRemovesTheFileAndJoins() throws {
        let running = try RunningListener()
        let clients = try (0..<3).map { _ in try Client(path: running.path) }
        #expect(eventually { running.sink.opened.count == 3 })
        #expect(FileManager.default.fileExists(atPath: running.path))

        running.listener.stop()
        // stop() joined the thread, so every callback has already happened and nothing follows.
        let afterStop = running.sink.snapshot
        #expect(running.sink.closed.count == 3)
        #expect(!FileManager.default.fileExists(atPath: running.path))
        for client in clients { #expect(client.waitForEndOfStream()) }
        running.listener.stop()
        usleep(50_000)
        #expect(running.sink.snapshot == afterStop)
        #expect(throws: POSIXError.self) { try Client(path: running.path) }
    }

    @Test func stopLeavesAFileThatReplacedOurs() throws {
        let running = try RunningListener()
        try FileManager.default.removeItem(atPath: running.path)
        try "someone else's".write(toFile: running.path, atomically: false, encoding: .utf8)
        running.listener.stop()
        #expect(try String(contentsOfFile: running.path, encoding: .utf8) == "someone else's")
    }

    @Test func stopBeforeStartClosesTheSocket() throws {
        let running = try RunningListener(start: false)
        running.listener.stop()
        #expect(!FileManager.default.fileExists(atPath: running.path))
    }

    @Test func floodingClientDoesNotStarveAQuietOne() throws {
        let options = IngestListener.Options(messagesPerWakeup: 16)
        let running = try RunningListener(options: options, start: false)
        // Both connections wait in the backlog with their messages queued, then the listener starts,
        // accepts both at once and sees both readable in the same wakeup.
        let flooder = try Client(path: running.path)
        var queued = 0
        while queued < 1_000, flooder.trySend(Frame.values([ValueUpdate(id: 1, value: Double(queued))]).bytes) {
            queued += 1
        }
        #expect(queued > 32)
        let quiet = try Client(path: running.path)
        #expect(quiet.send(Frame.goodbye.bytes) == 0)
        try running.listener.start()
        #expect(eventually { running.sink.frameCount == queued + 1 })

        let frames = running.sink.frames
        let quietPosition = frames.firstIndex { $0.bytes == Frame.goodbye.bytes }
        #expect(quietPosition != nil)
        #expect((quietPosition ?? .max) <= options.messagesPerWakeup)
    }

    @Test func burstFromEightThreadsArrivesComplete() throws {
        let running = try RunningListener()
        let threads = 8
        let perThread = 1_250
        let finished = DispatchSemaphore(value: 0)
        let failures = Atomic(0)
        let path = running.path
        for thread in 0..<threads {
            Thread.detachNewThread {
                defer { finished.signal() }
                guard let client = try? Client(path: path) else {
                    failures.add(1, ordering: .relaxed)
                    return
                }
                for sequence in 0..<perThread {
                    let frame = Frame.values([ValueUpdate(id: UInt32(thread), value: Double(sequence))])
                    if client.send(frame.bytes) != 0 { failures.add(1, ordering: .relaxed) }
                }
            }
        }
        for _ in 0..<threads { finished.wait() }
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(eventually { running.sink.frameCount == threads * perThread })

        var perSender: [UInt32: [Double]] = [:]
        for frame in running.sink.frames {
            guard case .values(let updates) = try FrameDecoder.decode(frame.bytes) else {
                Issue.record("not a values frame")
                continue
            }
            perSender[updates[0].id, default: []].append(updates[0].value)
        }
        #expect(perSender.count == threads)
        #expect(perSender.values.allSatisfy { $0 == (0..<perThread).map(Double.init) })
    }

    /// A peer's supplementary groups (`SO_PEERGROUPS`, up to 65,536 of them) were read at every accept
    /// and kept for the connection's life even with no gid allow-list: 256 KiB a connection. They are
    /// read only when the sink names groups, and only the first such one the peer is in is kept.
    @Test(.enabled(if: geteuid() == 0, "needs root to connect with chosen supplementary groups"))
    func supplementaryGroupsAreReadOnlyForTheSinksGroupsAndNotKept() throws {
        /// Connects as root with supplementary groups 4242, 4343 and 4444; the groups the sink received.
        func groupsSeen(by sink: RecordingSink) throws -> [UInt32] {
            let running = try RunningListener(sink: sink)
            _ = try runProcess(
                "/usr/bin/setpriv",
                [
                    "--groups=4242,4343,4444", builtExecutable("taskwatch"), "send", "--socket", running.path,
                    "--process", "grouped", "--hold", "0s",
                ], timeout: .seconds(30))
            #expect(eventually { sink.opened.count == 1 })
            let peer = try #require(sink.opened.first?.1)
            #expect(peer.uid == 0 && peer.gid == 0)
            return peer.groups
        }
        #expect(try groupsSeen(by: RecordingSink()) == [])
        #expect(try groupsSeen(by: RecordingSink(peerGroupsOfInterest: [4343, 9999])) == [4343])
        #expect(try groupsSeen(by: RecordingSink(peerGroupsOfInterest: [9999])) == [])
    }

    @Test func stopFromInsideASinkCallbackDoesNotDeadlock() throws {
        final class StoppingSink: IngestSink, Sendable {
            let listener = Mutex<IngestListener?>(nil)
            let closed = Atomic(0)
            func connectionOpened(_ id: ConnectionID, peer: PeerCredentials) -> Bool { true }
            func frameReceived(_ id: ConnectionID, bytes: UnsafeRawBufferPointer, truncated: Bool) -> IngestVerdict {
                listener.withLock { $0?.stop() }
                return .keep
            }
            func connectionClosed(_ id: ConnectionID) { closed.add(1, ordering: .relaxed) }
            func tick(nowNanoseconds: UInt64) {}
        }
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        let sink = StoppingSink()
        let listener = try IngestListener(socket: try IngestSocket.bind(path: path), sink: sink)
        sink.listener.withLock { $0 = listener }
        try listener.start()
        let client = try Client(path: path)
        #expect(client.send(Frame.goodbye.bytes) == 0)
        #expect(client.waitForEndOfStream())
        #expect(eventually { !FileManager.default.fileExists(atPath: path) })
        #expect(eventually { sink.closed.load(ordering: .relaxed) == 1 })
        listener.stop()
        sink.listener.withLock { $0 = nil }
    }
}
