import CTaskWatchSocket
import Foundation
import TaskWatchTestSupport
import Testing

@testable import TaskWatch

/// The client against its host: what the app does to descriptors, processes and the environment must
/// never make the reporter damage the app.
@Suite(.serialized) struct HostTests {
    /// An app that closes a descriptor it does not own (a `close` done twice), here the reporter's
    /// socket, and gets the number back for a socket or pipe of its own: the reporter went on sending
    /// its reports into the app's socket (a SEQPACKET socket took them all), or, meeting ENOTSOCK on the
    /// pipe, closed the app's descriptor as it dropped the connection. It now checks the socket's
    /// identity before each use, leaves the number to the app and reconnects.
    @Test(arguments: ["socket", "pipe"])
    func aDescriptorTheAppClosedAndReusedIsNeitherWrittenToNorClosed(kind: String) async throws {
        let daemon = FakeDaemon()
        daemon.listen()
        let reporter = makeReporter(daemon)
        reporter.start()
        var stopped = false
        defer { if !stopped { reporter.stop() } }
        #expect(try await daemon.waitFor { !$0.declarations.isEmpty })
        let fd = try #require(descriptorConnected(to: daemon.path), "no descriptor connected to the daemon")
        var pair: [Int32] = [-1, -1]
        if kind == "socket" {
            #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        } else {
            #expect(pipe(&pair) == 0)
        }
        // The app's end is pair[1] for a pipe (written by the reporter), pair[0] for a socket.
        let appEnd = kind == "socket" ? pair[0] : pair[1]
        let readEnd = kind == "socket" ? pair[1] : pair[0]
        defer {
            close(pair[0])
            close(pair[1])
        }
        _ = fcntl(readEnd, F_SETFL, O_NONBLOCK)
        // The app's double close and its next descriptor in one step: the same number, now the app's.
        #expect(dup2(appEnd, fd) == fd)
        defer { close(fd) }
        let identity = try #require(descriptorIdentity(appEnd))
        // Reports go on, on a new connection.
        #expect(try await daemon.waitFor { $0.connections >= 2 }, "the reporter never noticed")
        let frames = daemon.frames.count
        #expect(try await daemon.waitFor { $0.frames.count > frames + 3 })
        reporter.stop()
        stopped = true
        #expect(reporter.descriptorsLost.load(ordering: .relaxed) >= 1)
        var byte: UInt8 = 0
        #expect(read(readEnd, &byte, 1) < 0 && errno == EAGAIN, "the reporter wrote into the app's \(kind)")
        #expect(descriptorIdentity(fd) == identity, "the reporter closed the app's \(kind)")
    }

    /// The reverse in a forked child: the connection is closed there (`tw_close_on_fork_add`), but a
    /// number the app closed and reused named the app's file by the fork, and the child closed it.
    @Test func aForkedChildKeepsADescriptorTheAppReusedAfterTheClientsWasClosed() throws {
        var ours: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ours) == 0)
        defer { close(ours[1]) }
        #expect(tw_close_on_fork_add(ours[0]) == 0)
        defer {
            tw_close_on_fork_remove(ours[0])
            close(ours[0])
        }
        var app: [Int32] = [-1, -1]
        #expect(pipe(&app) == 0)
        defer {
            close(app[0])
            close(app[1])
        }
        #expect(dup2(app[1], ours[0]) == ours[0])
        let number = ours[0]
        let child = fork()
        if child == 0 {
            // Only async-signal-safe calls in the child of a multithreaded process.
            _exit(fcntl(number, F_GETFD) == -1 ? 1 : 0)
        }
        #expect(child > 0)
        var status: Int32 = 0
        waitpid(child, &status, 0)
        #expect(status == 0, "the child closed the app's descriptor")
    }

    /// A `TASKWATCH_SOCKET` no connection can use: longer than a Unix socket address holds, or not UTF-8
    /// (Swift replaces the bad bytes, so the path tried is another). Every connection failed, and every
    /// report was dropped, without a word; `start` now says so, as for the other variables.
    @Test func aSocketPathNoConnectionCanUseIsSaidAtStart() throws {
        let long = "/tmp/" + String(repeating: "s", count: 200) + ".sock"
        let lines = Configuration(environment: ["TASKWATCH_SOCKET": long]).noticeLines
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        #expect(line.hasPrefix("TaskWatch: TASKWATCH_SOCKET=\"/tmp/sss"))
        #expect(line.hasSuffix(" is 210 bytes, longer than the 107 a Unix socket address holds; no report can be sent"))
        // 107 bytes fit.
        #expect(
            Configuration(environment: ["TASKWATCH_SOCKET": "/" + String(repeating: "s", count: 106)]).noticeLines == []
        )
        let bad = Array("/tmp/".utf8) + [0xff] + Array(".sock".utf8)
        let notUTF8 = Environment.socketNotice(String(decoding: bad, as: UTF8.self), bytes: bad)
        #expect(notUTF8?.problem == "is not valid UTF-8")
        #expect(Environment.socketNotice("/tmp/ok.sock", bytes: Array("/tmp/ok.sock".utf8)) == nil)
        #expect(Environment.socketNotice("relative.sock") == nil)
    }
}

/// The descriptor of this process connected to the Unix socket at `path`.
func descriptorConnected(to path: String) -> Int32? {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for fd in entries.compactMap({ Int32($0) }) {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard result == 0 else { continue }
        let peer = withUnsafeBytes(of: address.sun_path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if peer == path { return fd }
    }
    return nil
}

/// The device and inode `fd` names, or nil when it is not open.
func descriptorIdentity(_ fd: Int32) -> [UInt64]? {
    var status = stat()
    guard fstat(fd, &status) == 0 else { return nil }
    return [UInt64(status.st_dev), UInt64(status.st_ino)]
}
