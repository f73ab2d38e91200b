import Foundation
import Glibc
import Logging
import Synchronization
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

/// Which process a connection speaks for: the pid the kernel gives, told apart from an earlier holder of
/// that pid by the start time `/proc` shows. A new process given the pid of one that exited (pid reuse,
/// fast in containers) must never be shown beside it, and a peer whose pid the daemon cannot see must
/// not be served.
@Suite struct ProcessIdentityTests {
    let queueDepth = SeriesDeclaration(id: 1, type: .gauge, name: "queue_depth", help: "", labels: [])

    /// The sample lines of `h`'s exposition that start with `prefix`.
    func lines(_ h: Harness, _ prefix: String) -> Set<Substring> {
        Set(h.text().split(separator: "\n").filter { $0.hasPrefix(prefix) })
    }

    /// Opens `connection` from `pid`, says hello as `process`, declares queue_depth and reports `value`.
    func report(_ h: Harness, _ connection: UInt64, pid: Int32, process: String, value: Double) {
        #expect(h.open(connection, pid: pid))
        h.hello(connection, process: process)
        h.send(connection, .declare([queueDepth]))
        #expect(verdict(h, connection, value) == .keep)
    }

    /// What the registry says to a values frame of queue_depth on `connection`.
    func verdict(_ h: Harness, _ connection: UInt64, _ value: Double) -> IngestVerdict {
        h.send(connection, FrameEncoder.encode(.values([ValueUpdate(id: 1, value: value)]))[0])
    }

    /// The review's repro: "worker" with pid 10 exits without a goodbye, and a new "worker" is given pid
    /// 10. Both were shown, with the same labels (111 and 222), and Prometheus kept the stale one. One
    /// pid and process name is one set of series whatever the start times say: different (a reused
    /// pid), or unknown (a `/proc` that hides the process, where a reconnect must still replace its
    /// connection).
    @Test func aHelloReplacesTheGoneClientOfItsPidAndProcessNameAtOnce() {
        let times = FakeStartTimes()
        let h = Harness(startTimes: times)
        times.set(10, 100)
        report(h, 1, pid: 10, process: "worker", value: 111)
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.value("taskwatch_client_up{process=\"worker\",pid=\"10\"}") == "0")
        times.set(10, 200)
        report(h, 2, pid: 10, process: "worker", value: 222)
        #expect(lines(h, "queue_depth{") == ["queue_depth{process=\"worker\",pid=\"10\"} 222"])
        #expect(lines(h, "taskwatch_client_up{") == ["taskwatch_client_up{process=\"worker\",pid=\"10\"} 1"])

        // pid 20: no start time at all.
        report(h, 3, pid: 20, process: "hidden", value: 1)
        h.registry.connectionClosed(ConnectionID(3))
        report(h, 4, pid: 20, process: "hidden", value: 2)
        #expect(lines(h, "queue_depth{process=\"hidden\"") == ["queue_depth{process=\"hidden\",pid=\"20\"} 2"])
        #expect(h.value("taskwatch_series") == "2")

        // Nothing was left held for a grace period: once both leave, nothing is.
        for connection: UInt64 in [2, 4] {
            h.send(connection, .goodbye)
            h.registry.connectionClosed(ConnectionID(connection))
        }
        #expect(h.value("taskwatch_series") == "0")
        #expect(h.registry.trackedUIDCount == 0)
    }

    /// A gone client whose process provably exited (its pid has another start time now) goes at the new
    /// process's hello whatever its name: kept for the grace period, it would show a pid that belongs to
    /// another process. The new process's own gone connection under another name stays, as any
    /// process's does, and an unknown start time proves nothing.
    @Test func aReusedPidEndsTheExitedProcessesGoneClientsUnderEveryName() {
        let times = FakeStartTimes()
        let h = Harness(startTimes: times)
        times.set(10, 100)
        report(h, 1, pid: 10, process: "worker", value: 1)
        report(h, 2, pid: 10, process: "helper", value: 2)
        h.registry.connectionClosed(ConnectionID(1))
        h.registry.connectionClosed(ConnectionID(2))
        times.set(10, 200)
        report(h, 3, pid: 10, process: "sidecar", value: 3)
        #expect(lines(h, "queue_depth{") == ["queue_depth{process=\"sidecar\",pid=\"10\"} 3"])
        #expect(lines(h, "taskwatch_client_up{") == ["taskwatch_client_up{process=\"sidecar\",pid=\"10\"} 1"])
        h.registry.connectionClosed(ConnectionID(3))
        report(h, 4, pid: 10, process: "main", value: 4)
        #expect(
            lines(h, "queue_depth{")
                == ["queue_depth{process=\"sidecar\",pid=\"10\"} 3", "queue_depth{process=\"main\",pid=\"10\"} 4"])
        #expect(h.value("taskwatch_client_up{process=\"sidecar\",pid=\"10\"}") == "0")

        // pid 30: the gone client's start time was not known, so nothing says its process exited.
        report(h, 5, pid: 30, process: "unseen", value: 5)
        h.registry.connectionClosed(ConnectionID(5))
        times.set(30, 300)
        report(h, 6, pid: 30, process: "seen", value: 6)
        #expect(h.value("taskwatch_client_up{process=\"unseen\",pid=\"30\"}") == "0")
        #expect(h.value("taskwatch_series") == "4")
        h.clock.advance(seconds: 31)
        h.registry.tick(nowNanoseconds: 0)
        #expect(h.value("taskwatch_series") == "2")
    }

    /// A connection still open although its process has exited was inherited by a descendant: its series
    /// show a pid the kernel has given to another process. The new process's hello closes it at its next
    /// frame, whatever its name, as a reconnect closes the connection it replaces. A connection accepted
    /// before the pid was reused never takes over from the new process: when it says hello after it, it
    /// is the one closed (it was left beside the new process, showing its pid, under another name).
    @Test func aConnectionLeftOpenByAnExitedProcessIsClosedAtTheNewOnesHello() {
        let times = FakeStartTimes()
        let h = Harness(startTimes: times)
        times.set(10, 100)
        #expect(h.open(1, pid: 10))
        report(h, 2, pid: 10, process: "worker", value: 1)
        report(h, 3, pid: 10, process: "helper", value: 2)
        times.set(10, 200)
        report(h, 4, pid: 10, process: "fresh", value: 3)
        #expect(lines(h, "queue_depth{") == ["queue_depth{process=\"fresh\",pid=\"10\"} 3"])
        #expect(verdict(h, 2, 1) == .disconnect)
        #expect(verdict(h, 3, 2) == .disconnect)
        h.registry.connectionClosed(ConnectionID(2))
        h.registry.connectionClosed(ConnectionID(3))
        #expect(lines(h, "taskwatch_client_up{") == ["taskwatch_client_up{process=\"fresh\",pid=\"10\"} 1"])

        let late = Hello(
            claimedPID: 10, intervalNanoseconds: 10_000_000, process: "late", clientVersion: "test", labels: [])
        #expect(h.send(1, FrameEncoder.encode(.hello(late))[0]) == .disconnect)
        #expect(verdict(h, 4, 5) == .keep)
        #expect(lines(h, "queue_depth{") == ["queue_depth{process=\"fresh\",pid=\"10\"} 5"])
        #expect(lines(h, "taskwatch_client_up{") == ["taskwatch_client_up{process=\"fresh\",pid=\"10\"} 1"])
        #expect(h.registry.helloDeadlinePassed(ConnectionID(1)), "closed, should the listener still hold it")
        h.registry.connectionClosed(ConnectionID(1))
        #expect(h.value("taskwatch_clients") == "1")
        #expect(h.value("taskwatch_series") == "1")
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"hello_timeout\"}") == "0")
    }

    /// The review's second repro: a daemon in a pid namespace of its own got pid 0 for every peer, and
    /// two processes named "app" took each other's place at every hello, each closing the other's
    /// connection. A peer the kernel cannot name is refused at once, counted and logged.
    @Test func aPeerWithoutAPidIsRefusedCountedAndLogged() throws {
        let captured = CapturedLog()
        let times = FakeStartTimes()
        // A start time `/proc` would never give for pid 0, so that two such peers would match.
        times.set(0, 1)
        let h = Harness(startTimes: times, log: RefusalLog(logger: captured.logger()))
        #expect(!h.open(1, pid: 0))
        #expect(!h.open(2, pid: 0))
        #expect(h.value("taskwatch_clients_rejected_total{reason=\"unknown_pid\"}") == "2")
        #expect(h.value("taskwatch_clients") == "0")
        // The listener closes a refused connection; a frame that still came would find no client.
        h.hello(1, process: "app")
        #expect(!h.text().contains("pid=\"0\""))

        let logged = captured.events
        // The second refusal within the second is held back by the rate limit.
        #expect(logged.count == 1)
        let line = try #require(logged.first)
        #expect(line.message == "Ingest client rejected")
        #expect(line.metadata["reason"] == "unknown_pid")
        #expect(line.metadata["pid"] == "0")
        #expect(line.metadata["hint"]?.contains("pid namespace") == true)
    }

    /// What the daemon reads for pid 0 and for a process `/proc` does not show: no start time.
    @Test func noStartTimeIsReadForPidZeroOrAProcessProcDoesNotShow() {
        #expect(ProcessReader.startTicks(pid: 0) == nil)
        #expect(ProcessReader.startTicks(pid: -1) == nil)
        #expect(ProcessReader.startTicks(pid: Int32.max) == nil)
        #expect(ProcessReader.startTicks(pid: getpid()) != nil)
    }
}

/// The same over real sockets: the listener hands the kernel's credentials to the registry, and a second
/// connection from this test process stands for a new process given the pid of the first. The start
/// times are the test's, as the kernel cannot be made to reuse a pid on demand.
@Suite struct ProcessIdentityOverSocketsTests {
    @Test func aReusedPidOverRealSocketsShowsOnlyTheNewProcess() throws {
        let directory = ScratchDirectory()
        let times = FakeStartTimes()
        let pid = getpid()
        times.set(pid, 100)
        let registry = Registry(
            limits: RegistryLimits(), clock: SystemClock(), log: nil, startTicks: { times.read($0) })
        let exporter = Exporter(
            registry: registry, build: BuildInfo(version: "test", revision: "abc", swiftVersion: "6.3"))
        let listener = try IngestListener(
            socket: try IngestSocket.bind(path: directory.file("ingest.sock")), sink: registry)
        try listener.start()
        defer { listener.stop() }
        func lines(_ prefix: String) -> [Substring] {
            String(decoding: exporter.render(.text), as: UTF8.self).split(separator: "\n").filter {
                $0.hasPrefix(prefix)
            }
        }
        func report(_ client: SeqpacketClient, _ value: Double) {
            client.send(
                .hello(Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "worker", clientVersion: "t")))
            client.send(.declare([SeriesDeclaration(id: 1, type: .gauge, name: "queue_depth", help: "", labels: [])]))
            client.send(.values([ValueUpdate(id: 1, value: value)]))
        }

        var first: SeqpacketClient? = try SeqpacketClient(path: directory.file("ingest.sock"))
        report(first!, 111)
        #expect(eventually { lines("queue_depth{") == ["queue_depth{process=\"worker\",pid=\"\(pid)\"} 111"] })
        // Gone without a goodbye: held for the grace period.
        first = nil
        #expect(
            eventually { lines("taskwatch_client_up{") == ["taskwatch_client_up{process=\"worker\",pid=\"\(pid)\"} 0"] }
        )

        times.set(pid, 200)
        let second = try SeqpacketClient(path: directory.file("ingest.sock"))
        report(second, 222)
        #expect(eventually { lines("queue_depth{") == ["queue_depth{process=\"worker\",pid=\"\(pid)\"} 222"] })
        #expect(lines("taskwatch_client_up{") == ["taskwatch_client_up{process=\"worker\",pid=\"\(pid)\"} 1"])
        withExtendedLifetime(second) {}
    }
}

/// What a scrape costs in `/proc` reads: one per process, however many connections it holds.
@Suite struct ProcessReadCostTests {
    /// A review opened thousands of connections from one process and stretched every scrape to
    /// seconds, since each connection read the process's `/proc` files (its whole `fd` directory).
    /// The names the daemon writes from `/proc` are the ones the wire module reserves, so that no client
    /// declares one of them (the swift-metrics backend refuses them in the process by that list).
    @Test func theKernelSeriesWrittenAreTheOnesReserved() {
        let pid = getpid()
        let registry = Registry(limits: RegistryLimits(), clock: SystemClock(), log: nil)
        let exporter = Exporter(
            registry: registry, build: BuildInfo(version: "test", revision: "abc", swiftVersion: "6.3"),
            processStats: { ProcessReader.stats(pid: String($0)) })
        #expect(registry.connectionOpened(ConnectionID(1), peer: PeerCredentials(pid: pid, uid: 0, gid: 0)))
        for bytes in FrameEncoder.encode(
            .hello(Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "p", clientVersion: "t")))
        {
            _ = bytes.withUnsafeBytes { registry.frameReceived(ConnectionID(1), bytes: $0, truncated: false) }
        }
        let text = String(decoding: exporter.render(.text), as: UTF8.self)
        let written = Set(
            text.split(separator: "\n").filter { $0.hasPrefix("swift_process_") }.map {
                String($0.prefix { $0 != "{" && $0 != " " })
            })
        #expect(written == DaemonSeries.kernelNames)
    }

    @Test func aProcessWithManyConnectionsIsReadOncePerScrape() {
        let times = FakeStartTimes()
        let pid = getpid()
        let ticks = ProcessReader.startTicks(pid: pid)
        times.set(pid, ticks)
        let registry = Registry(
            limits: RegistryLimits(), clock: SystemClock(), log: nil, startTicks: { times.read($0) })
        let reads = Mutex<[Int32]>([])
        let exporter = Exporter(
            registry: registry, build: BuildInfo(version: "test", revision: "abc", swiftVersion: "6.3"),
            processStats: { pid in
                reads.withLock { $0.append(pid) }
                return ProcessReader.stats(pid: String(pid))
            })
        for connection in UInt64(1)...50 {
            #expect(
                registry.connectionOpened(ConnectionID(connection), peer: PeerCredentials(pid: pid, uid: 0, gid: 0)))
            for bytes in FrameEncoder.encode(
                .hello(
                    Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "p\(connection)", clientVersion: "t")
                ))
            {
                _ = bytes.withUnsafeBytes {
                    registry.frameReceived(ConnectionID(connection), bytes: $0, truncated: false)
                }
            }
        }
        let text = String(decoding: exporter.render(.text), as: UTF8.self)
        #expect(reads.withLock { $0 } == [pid])
        // Every connection still gets the process's figures.
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("swift_process_open_fds{") }.count == 50)
    }

    /// A connection that closed shows no `/proc` figures during its grace period, though its process
    /// is alive with the same start time: after `exec` it is another program (review finding).
    @Test func aGoneConnectionShowsNoProcessFigures() {
        let times = FakeStartTimes()
        let pid = getpid()
        times.set(pid, ProcessReader.startTicks(pid: pid))
        let registry = Registry(
            limits: RegistryLimits(), clock: SystemClock(), log: nil, startTicks: { times.read($0) })
        let exporter = Exporter(
            registry: registry, build: BuildInfo(version: "test", revision: "abc", swiftVersion: "6.3"))
        #expect(registry.connectionOpened(ConnectionID(1), peer: PeerCredentials(pid: pid, uid: 0, gid: 0)))
        for bytes in FrameEncoder.encode(
            .hello(Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "before", clientVersion: "t")))
        {
            _ = bytes.withUnsafeBytes { registry.frameReceived(ConnectionID(1), bytes: $0, truncated: false) }
        }
        func lines() -> [Substring] {
            String(decoding: exporter.render(.text), as: UTF8.self).split(separator: "\n").filter {
                $0.hasPrefix("swift_process_threads{") || $0.hasPrefix("taskwatch_client_up{")
            }
        }
        #expect(lines().count == 2)
        registry.connectionClosed(ConnectionID(1))
        #expect(lines() == ["taskwatch_client_up{process=\"before\",pid=\"\(pid)\"} 0"])
    }

    /// The count of open descriptors, read from the `fd` directory's size where the kernel gives it.
    @Test func openDescriptorsFollowWhatTheProcessOpens() throws {
        let before = try #require(ProcessReader.stats(pid: String(getpid()))?.openFDs)
        let opened = (0..<100).map { _ in open("/dev/null", O_RDONLY | O_CLOEXEC) }
        defer { for fd in opened { close(fd) } }
        #expect(opened.allSatisfy { $0 >= 0 })
        let after = try #require(ProcessReader.stats(pid: String(getpid()))?.openFDs)
        #expect(after == before + 100)
    }
}
