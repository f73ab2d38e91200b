import CTaskWatchSocket
import Foundation
import TaskWatchDaemon
import TaskWatchTestSupport
import Testing

@Suite struct SocketActivationTests {
    @Test func readsDescriptorsAndNamesForThisProcess() throws {
        let environment = ["LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "ingest:web"]
        let passed = try SocketActivation.descriptors(environment: environment, pid: 4242)
        #expect(passed.map(\.fd) == [3, 4])
        #expect(passed.map(\.name) == ["ingest", "web"])
    }

    @Test func ignoresVariablesMeantForAnotherProcess() throws {
        let environment = ["LISTEN_PID": "1", "LISTEN_FDS": "2"]
        #expect(try SocketActivation.descriptors(environment: environment, pid: 4242).isEmpty)
        #expect(try SocketActivation.descriptors(environment: [:], pid: 4242).isEmpty)
    }

    @Test func missingOrMismatchedNamesBecomeUnknown() throws {
        let environment = ["LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "only-one"]
        #expect(
            try SocketActivation.descriptors(environment: environment, pid: 7).map(\.name) == ["unknown", "unknown"])
    }

    @Test func malformedVariablesAreErrors() {
        #expect(throws: SocketActivation.ActivationError.self) {
            try SocketActivation.descriptors(environment: ["LISTEN_PID": "x", "LISTEN_FDS": "1"], pid: 7)
        }
        #expect(throws: SocketActivation.ActivationError.self) {
            try SocketActivation.descriptors(environment: ["LISTEN_PID": "7", "LISTEN_FDS": "-1"], pid: 7)
        }
    }

    @Test func classifiesRealSocketsAndMarksThemCloseOnExec() throws {
        var seqpacket: [Int32] = [0, 0]
        var stream: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &seqpacket) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &stream) == 0)
        let datagram = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { for fd in seqpacket + stream + [datagram] { close(fd) } }

        let classified = try SocketActivation.classify([
            (seqpacket[0], "taskwatch.socket"), (stream[0], "http"), (stream[1], "ingest"), (datagram, "odd"),
        ])
        #expect(classified.map(\.role) == [.ingest, .http, .ingest, .unknown])
        for socket in classified {
            #expect(fcntl(socket.fd, F_GETFD) & FD_CLOEXEC != 0)
        }
        #expect(throws: SocketActivation.ActivationError.self) { try SocketActivation.classify([(9_999, "gone")]) }
    }

    @Test func takingFromTheProcessEnvironmentUnsetsTheVariables() throws {
        // LISTEN_PID names another process, so no descriptor of this test process is touched.
        setenv("LISTEN_PID", "1", 1)
        setenv("LISTEN_FDS", "1", 1)
        setenv("LISTEN_FDNAMES", "ingest", 1)
        #expect(try SocketActivation.takeFromProcessEnvironment().isEmpty)
        for key in SocketActivation.environmentKeys { #expect(getenv(key) == nil) }
    }
}

@Suite struct SystemdNotifierTests {
    /// A bound datagram socket standing in for systemd's notification socket.
    final class FakeSystemd {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)

        init(path: String) { precondition(tw_unix_bind(fd, path) == 0) }

        init(abstract name: String) {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(name.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw[0] = 0
                for (index, byte) in bytes.enumerated() { raw[index + 1] = byte }
            }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + 1 + bytes.count)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            precondition(result == 0)
        }

        deinit { close(fd) }

        func receive() -> String? {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 5_000) == 1 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count >= 0 else { return nil }
            return String(decoding: buffer[..<count], as: UTF8.self)
        }
    }

    @Test func sendsStatesToAPathSocket() throws {
        let directory = ScratchDirectory()
        let path = directory.file("notify")
        let systemd = FakeSystemd(path: path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        #expect(notifier.isEnabled)
        #expect(notifier.ready())
        #expect(systemd.receive() == "READY=1")
        #expect(notifier.status("serving 3 clients\nsecond line"))
        #expect(systemd.receive() == "STATUS=serving 3 clients second line")
        #expect(notifier.watchdog())
        #expect(systemd.receive() == "WATCHDOG=1")
        #expect(notifier.stopping())
        #expect(systemd.receive() == "STOPPING=1")
    }

    @Test func sendsToAnAbstractSocket() {
        let name = "taskwatch-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let systemd = FakeSystemd(abstract: name)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@" + name])
        #expect(notifier.ready())
        #expect(systemd.receive() == "READY=1")
    }

    @Test func doesNothingWithoutNotifySocket() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(notifier.watchdogPingInterval == nil)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "vsock:2:1234"]).isEnabled)
    }

    @Test func reportsFailureWhenNobodyListens() {
        let directory = ScratchDirectory()
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": directory.file("absent")]).ready())
    }

    @Test func watchdogPingsAtHalfTheInterval() {
        let pid = getpid()
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000"]).watchdogPingInterval == .seconds(1))
        #expect(
            SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid)"]).watchdogPingInterval
                == .seconds(15))
        #expect(
            SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid + 1)"])
                .watchdogPingInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogPingInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "soon"]).watchdogPingInterval == nil)
    }
}
