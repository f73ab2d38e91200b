import CTaskWatchSocket
import Foundation
import Synchronization
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// The listener checks about once a second that its socket's path still names the socket it bound.
/// Before, a removed file (tmpfiles aging `/tmp/taskwatch-$UID`) went unnoticed: nothing was logged
/// and no client on the host could connect again until the daemon restarted.
@Suite struct SocketFileWatchTests {
    /// Collects what the listener reports, from its thread.
    final class EventLog: Sendable {
        private let events = Mutex<[IngestListener.SocketFileEvent]>([])
        var snapshot: [IngestListener.SocketFileEvent] { events.withLock { $0 } }
        func record(_ event: IngestListener.SocketFileEvent) { events.withLock { $0.append(event) } }
    }

    static func values(_ value: Double) -> [UInt8] { Frame.values([ValueUpdate(id: 1, value: value)]).bytes }

    static func inode(_ path: String) -> UInt64? {
        var status = stat()
        return lstat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }

    @Test func aRemovedSocketFileIsBoundAgainWithItsModeAndNewClientsReachTheSink() throws {
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        let sink = RecordingSink()
        let log = EventLog()
        let listener = try IngestListener(
            socket: try IngestSocket.bind(path: path, mode: 0o640), sink: sink, socketFileChanged: log.record)
        try listener.start()
        defer { listener.stop() }
        let earlier = try Client(path: path)
        #expect(earlier.send(Self.values(1)) == 0)
        #expect(eventually { sink.frameCount == 1 })

        #expect(unlink(path) == 0)
        let removedAt = ContinuousClock.now
        var fresh: Client?
        #expect(
            eventually(timeout: .seconds(5)) {
                fresh = try? Client(path: path); return fresh != nil
            })
        #expect(ContinuousClock.now - removedAt < .milliseconds(2_500))
        let client = try #require(fresh)
        #expect(client.send(Self.values(2)) == 0)
        #expect(eventually { sink.frameCount == 2 })
        // The connection made before the file went is still served.
        #expect(earlier.send(Self.values(3)) == 0)
        #expect(eventually { sink.frameCount == 3 })
        var status = stat()
        #expect(lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFSOCK && status.st_mode & 0o777 == 0o640)
        #expect(log.snapshot == [.recreated(path: path)])

        // Its directory too: made again, private as `bind` makes one in /tmp.
        try FileManager.default.removeItem(atPath: directory.path)
        fresh = nil
        #expect(
            eventually(timeout: .seconds(5)) {
                fresh = try? Client(path: path); return fresh != nil
            })
        #expect(try #require(fresh).send(Self.values(4)) == 0)
        #expect(eventually { sink.frameCount == 4 })
        #expect(lstat(directory.path, &status) == 0 && status.st_mode & 0o777 == 0o700)
        #expect(log.snapshot == [.recreated(path: path), .recreated(path: path)])

        // Shutdown removes the file it bound last.
        listener.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func somethingElseAtThePathIsLeftAloneAndReportedOnce() throws {
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        let sink = RecordingSink()
        let log = EventLog()
        let listener = try IngestListener(
            socket: try IngestSocket.bind(path: path), sink: sink, socketFileChanged: log.record)
        try listener.start()
        defer { listener.stop() }

        // Another daemon's socket, moved over ours in one step as `mv` does.
        let other = try IngestSocket.bind(path: directory.file("other.sock"))
        defer { _ = close(other.fd) }
        #expect(rename(directory.file("other.sock"), path) == 0)
        let otherInode = Self.inode(path)
        #expect(eventually(timeout: .seconds(5)) { !log.snapshot.isEmpty })
        usleep(2_200_000)
        #expect(log.snapshot == [.occupied(path: path, what: "another socket")])
        #expect(Self.inode(path) == otherInode)
        // Clients reach the other socket.
        let client = try Client(path: path)
        var poller = pollfd(fd: other.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&poller, 1, 5_000) == 1)
        let accepted = tw_accept(other.fd)
        #expect(accepted >= 0)
        _ = close(accepted)
        _ = client

        // Then a regular file.
        try directory.write("precious", "precious")
        #expect(rename(directory.file("precious"), path) == 0)
        #expect(eventually(timeout: .seconds(5)) { log.snapshot.count == 2 })
        #expect(log.snapshot.last == .occupied(path: path, what: "a regular file"))

        listener.stop()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
        #expect(sink.opened.isEmpty)
    }

    /// `bind`'s directory checks hold for the new socket too: while its directory belongs to someone
    /// else nothing is bound (reported once), and once it is ours again the socket comes back.
    @Test(.enabled(if: geteuid() == 0, "needs root to give a directory away"))
    func aSocketIsBoundAgainOnlyThroughBindsChecks() throws {
        let directory = ScratchDirectory()
        let path = directory.file("run/ingest.sock")
        let sink = RecordingSink()
        let log = EventLog()
        let listener = try IngestListener(
            socket: try IngestSocket.bind(path: path), sink: sink,
            options: .init(socketCheckInterval: .milliseconds(200)), socketFileChanged: log.record)
        try listener.start()
        defer { listener.stop() }

        #expect(chown(directory.file("run"), 4_242, 4_242) == 0)
        #expect(unlink(path) == 0)
        #expect(eventually(timeout: .seconds(5)) { !log.snapshot.isEmpty })
        usleep(600_000)
        let failures = log.snapshot
        #expect(failures.count == 1)
        guard case .recreateFailed(path, let reason) = failures.first else {
            Issue.record("\(failures)")
            return
        }
        #expect(reason.contains("is owned by uid 4242"))
        #expect(!FileManager.default.fileExists(atPath: path))

        #expect(chown(directory.file("run"), 0, 0) == 0)
        #expect(eventually(timeout: .seconds(5)) { (try? Client(path: path)) != nil })
        #expect(log.snapshot.last == .recreated(path: path))
    }

    @Test func theFileOfASocketFromSystemdIsNotWatched() throws {
        let directory = ScratchDirectory()
        let path = directory.file("activated.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        #expect(tw_unix_bind(fd, path) == 0)
        #expect(listen(fd, 16) == 0)
        let log = EventLog()
        let listener = try IngestListener(
            socket: try IngestSocket.adopt(fd: fd), sink: RecordingSink(),
            options: .init(socketCheckInterval: .milliseconds(100)), socketFileChanged: log.record)
        try listener.start()
        defer { listener.stop() }
        #expect(unlink(path) == 0)
        usleep(500_000)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(log.snapshot.isEmpty)
    }
}
