import CTaskWatchSocket
import Foundation
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@Suite struct IngestSocketTests {
    @Test func bindsWithTheConfiguredModeAndListens() throws {
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        let socket = try IngestSocket.bind(path: path)
        defer { socket.close() }
        var status = stat()
        #expect(lstat(path, &status) == 0)
        #expect(status.st_mode & S_IFMT == S_IFSOCK)
        #expect(status.st_mode & 0o777 == 0o660)
        #expect(socket.ownsFile)
        #expect(tw_socket_is_listening(socket.fd) == 1)
        #expect(fcntl(socket.fd, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(socket.fd, F_GETFL) & O_NONBLOCK != 0)

        let other = try IngestSocket.bind(path: directory.file("other.sock"), mode: 0o600)
        defer { other.close() }
        #expect(lstat(directory.file("other.sock"), &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
    }

    @Test func staleSocketIsReplaced() throws {
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        // A listener that died without cleaning up leaves its file; connecting to it is refused.
        let dead = try IngestSocket.bind(path: path)
        _ = close(dead.fd)
        #expect(FileManager.default.fileExists(atPath: path))

        let socket = try IngestSocket.bind(path: path)
        defer { socket.close() }
        let client = try Client(path: path)
        #expect(client.send(Frame.goodbye.bytes) == 0)
    }

    @Test func liveSocketIsRefusedAndKept() throws {
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        let live = try IngestSocket.bind(path: path)
        defer { live.close() }
        let error = #expect(throws: IngestSocketError.self) { try IngestSocket.bind(path: path) }
        #expect(error?.description == "another taskwatchd is listening on \(path)")
        _ = try Client(path: path)
    }

    @Test func regularFileIsNeverDeleted() throws {
        let directory = ScratchDirectory()
        let path = directory.file("ingest.sock")
        try "precious".write(toFile: path, atomically: false, encoding: .utf8)
        let error = #expect(throws: IngestSocketError.self) { try IngestSocket.bind(path: path) }
        #expect(error?.description == "\(path) exists and is not a socket; refusing to replace it")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
    }

    @Test func overlongPathIsAClearError() {
        let path = "/tmp/" + String(repeating: "x", count: 110)
        let error = #expect(throws: IngestSocketError.self) { try IngestSocket.bind(path: path) }
        #expect(error?.description.contains("the limit is 107") == true)
    }

    @Test func missingParentsAreCreatedWith0755() throws {
        let directory = ScratchDirectory()
        let path = directory.file("a/b/ingest.sock")
        let socket = try IngestSocket.bind(path: path)
        defer { socket.close() }
        var status = stat()
        #expect(stat(directory.file("a/b"), &status) == 0)
        #expect(status.st_mode & 0o777 == 0o755)
    }

    @Test func directoryInAWorldWritablePlaceIsMadePrivate() throws {
        let directory = ScratchDirectory()
        let shared = directory.file("tmp")
        #expect(mkdir(shared, 0o777) == 0)
        #expect(chmod(shared, 0o1777) == 0)
        let path = shared + "/taskwatch-\(getuid())/ingest.sock"
        let socket = try IngestSocket.bind(path: path)
        defer { socket.close() }
        var status = stat()
        #expect(lstat(shared + "/taskwatch-\(getuid())", &status) == 0)
        #expect(status.st_mode & 0o777 == 0o700)
        #expect(status.st_uid == geteuid())

        // A loose mode on our own directory is tightened.
        socket.close()
        #expect(chmod(shared + "/taskwatch-\(getuid())", 0o755) == 0)
        let again = try IngestSocket.bind(path: path)
        defer { again.close() }
        #expect(lstat(shared + "/taskwatch-\(getuid())", &status) == 0)
        #expect(status.st_mode & 0o777 == 0o700)
    }

    @Test func symlinkedPrivateDirectoryIsRefused() throws {
        let directory = ScratchDirectory()
        let shared = directory.file("tmp")
        #expect(mkdir(shared, 0o1777) == 0)
        #expect(chmod(shared, 0o1777) == 0)
        #expect(mkdir(directory.file("elsewhere"), 0o700) == 0)
        #expect(symlink(directory.file("elsewhere"), shared + "/taskwatch-x") == 0)
        let error = #expect(throws: IngestSocketError.self) {
            try IngestSocket.bind(path: shared + "/taskwatch-x/ingest.sock")
        }
        #expect(error?.description.contains("is not a directory") == true)
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a directory away"))
    func privateDirectoryOwnedBySomeoneElseIsRefused() throws {
        let directory = ScratchDirectory()
        let shared = directory.file("tmp")
        #expect(mkdir(shared, 0o1777) == 0)
        #expect(chmod(shared, 0o1777) == 0)
        let foreign = shared + "/taskwatch-0"
        #expect(mkdir(foreign, 0o700) == 0)
        #expect(chown(foreign, 65_534, 65_534) == 0)
        let error = #expect(throws: IngestSocketError.self) { try IngestSocket.bind(path: foreign + "/ingest.sock") }
        #expect(error?.description.contains("is owned by uid 65534") == true)
        #expect(!FileManager.default.fileExists(atPath: foreign + "/ingest.sock"))
    }

    /// A review bound a root daemon into a `/run/taskwatch` owned by another account, which then moved
    /// the socket aside and put its own in place. Outside world-writable places too, the socket's
    /// directory must be ours or root's, and writable by no one else unless sticky.
    @Test(.enabled(if: geteuid() == 0, "needs root to give a directory away"))
    func aSocketDirectoryOwnedBySomeoneElseIsRefusedAnywhere() throws {
        let directory = ScratchDirectory()
        let run = directory.file("run")
        #expect(mkdir(run, 0o755) == 0)
        let foreign = run + "/taskwatch"
        #expect(mkdir(foreign, 0o755) == 0)
        #expect(chown(foreign, 4_242, 4_242) == 0)
        let error = #expect(throws: IngestSocketError.self) { try IngestSocket.bind(path: foreign + "/ingest.sock") }
        #expect(error?.description.contains("is owned by uid 4242, not by us (uid 0) or root") == true)
        #expect(!FileManager.default.fileExists(atPath: foreign + "/ingest.sock"))
    }

    @Test func aSocketDirectoryOthersMayWriteIsRefusedUnlessSticky() throws {
        let directory = ScratchDirectory()
        let run = directory.file("run")
        #expect(mkdir(run, 0o755) == 0)
        let loose = run + "/loose"
        #expect(mkdir(loose, 0o755) == 0 && chmod(loose, 0o775) == 0)
        let error = #expect(throws: IngestSocketError.self) { try IngestSocket.bind(path: loose + "/ingest.sock") }
        #expect(error?.description.contains("is writable by its group or by others (mode 775)") == true)
        // Sticky, as /tmp is: others may not rename or remove what is ours there.
        #expect(chmod(loose, 0o1775) == 0)
        let socket = try IngestSocket.bind(path: loose + "/ingest.sock")
        socket.close()
    }

    /// chmod(2) follows a symlink: one put in the socket's place between bind and chmod had a root
    /// daemon chmod any file (a review's race won 10 times in 30). The mode is set only on the entry
    /// itself, and only if it is a socket of ours.
    @Test func theSocketModeIsNeverSetThroughASymlinkOrOnAnotherFile() throws {
        let directory = ScratchDirectory()
        let target = directory.file("target")
        try directory.write("target", "secret")
        #expect(chmod(target, 0o600) == 0)
        #expect(symlink(target, directory.file("link.sock")) == 0)
        #expect(tw_chmod_own_socket(directory.file("link.sock"), 0o666) == -1 && errno == ELOOP)
        #expect(tw_chmod_own_socket(target, 0o666) == -1 && errno == EPERM)
        var status = stat()
        #expect(stat(target, &status) == 0 && status.st_mode & 0o777 == 0o600)
        let socket = try IngestSocket.bind(path: directory.file("ingest.sock"), mode: 0o600)
        defer { socket.close() }
        #expect(tw_chmod_own_socket(directory.file("ingest.sock"), 0o640) == 0)
        #expect(lstat(directory.file("ingest.sock"), &status) == 0 && status.st_mode & 0o777 == 0o640)
    }

    /// A review created `/tmp/taskwatch-<uid>` as another user, listened there, and received that uid's
    /// reports (process names, labels, values): clients connected to whatever socket sat at the default
    /// path. In a world-writable place the client now trusts the directory only if it is ours (or
    /// root's) and writable by no one else.
    @Test func aClientTrustsASocketDirectoryInAWorldWritablePlaceOnlyIfItIsOurs() throws {
        let directory = ScratchDirectory()
        let shared = directory.file("tmp")
        #expect(mkdir(shared, 0o777) == 0 && chmod(shared, 0o1777) == 0)
        let ours = shared + "/taskwatch-\(getuid())"
        #expect(mkdir(ours, 0o700) == 0)
        #expect(tw_client_directory_trusted(ours + "/ingest.sock") == 1)
        #expect(chmod(ours, 0o770) == 0)
        #expect(tw_client_directory_trusted(ours + "/ingest.sock") == 0, "writable by its group")
        #expect(mkdir(directory.file("elsewhere"), 0o700) == 0)
        #expect(symlink(directory.file("elsewhere"), shared + "/taskwatch-link") == 0)
        #expect(tw_client_directory_trusted(shared + "/taskwatch-link/ingest.sock") == 0, "a symlink")
        #expect(tw_client_directory_trusted(shared + "/taskwatch-missing/ingest.sock") == 0)
        if geteuid() == 0 {
            let foreign = shared + "/taskwatch-foreign"
            #expect(mkdir(foreign, 0o700) == 0 && chown(foreign, 4_242, 4_242) == 0)
            #expect(tw_client_directory_trusted(foreign + "/ingest.sock") == 0, "another user's")
        }
        // Outside world-writable places nothing is required (the daemon's /run/taskwatch may belong to
        // its own account).
        #expect(mkdir(directory.file("run"), 0o755) == 0)
        #expect(tw_client_directory_trusted(directory.file("run") + "/ingest.sock") == 1)
    }

    @Test func adoptsAnActivatedListeningSeqpacketSocket() throws {
        let directory = ScratchDirectory()
        let path = directory.file("activated.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        #expect(tw_unix_bind(fd, path) == 0)
        #expect(listen(fd, 16) == 0)

        let adopted = try IngestSocket.adopt(fd: fd)
        #expect(!adopted.ownsFile)
        #expect(adopted.path == path)
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)

        let sink = RecordingSink()
        let listener = try IngestListener(socket: adopted, sink: sink)
        try listener.start()
        let client = try Client(path: path)
        #expect(client.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { sink.frameCount == 1 })
        listener.stop()
        // systemd owns the file of an activated socket.
        #expect(FileManager.default.fileExists(atPath: path))
    }

    @Test func refusesToAdoptWhatIsNotAListeningSeqpacketSocket() throws {
        let directory = ScratchDirectory()
        let stream = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(stream) }
        #expect(tw_unix_bind(stream, directory.file("stream.sock")) == 0)
        #expect(listen(stream, 1) == 0)
        let streamError = #expect(throws: IngestSocketError.self) { try IngestSocket.adopt(fd: stream) }
        #expect(streamError?.description.contains("not SOCK_SEQPACKET") == true)

        let idle = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        defer { close(idle) }
        let idleError = #expect(throws: IngestSocketError.self) { try IngestSocket.adopt(fd: idle) }
        #expect(idleError?.description.contains("not listening") == true)

        let inet = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(inet) }
        let inetError = #expect(throws: IngestSocketError.self) { try IngestSocket.adopt(fd: inet) }
        #expect(inetError?.description.contains("not an AF_UNIX socket") == true)
    }
}
