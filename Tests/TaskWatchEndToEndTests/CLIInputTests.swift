import Foundation
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchCLI

/// A loopback HTTP "server" that never answers in time: `stall` listens and never accepts (the kernel
/// completes the handshake, nobody reads); `trickle` accepts and sends one byte every 100 ms, forever.
final class SlowServer: Sendable {
    let port: UInt16
    private let fd: Int32
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let trickles: Bool

    init(trickle: Bool) throws {
        trickles = trickle
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRNOTAVAIL) }
        port = UInt16(bigEndian: address.sin_port)
        if trickle {
            Thread { [self] in serve() }.start()
        } else {
            done.signal()
        }
    }

    private func serve() {
        var clients: [Int32] = []
        while !stopped.load(ordering: .relaxed) {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, 100) > 0 {
                let client = accept(fd, nil, nil)
                if client >= 0 { clients.append(client) }
            }
            for client in clients { _ = send(client, "H", 1, Int32(MSG_NOSIGNAL)) }
        }
        for client in clients { close(client) }
        done.signal()
    }

    deinit {
        stopped.store(true, ordering: .relaxed)
        done.wait()
        close(fd)
    }
}

/// Values, input and conditions the tool used to crash on, hang on, or describe wrongly.
@Suite(.serialized) struct CLIInputTests {
    @Test func figuresOfAnySizeFormatWithoutTrapping() {
        #expect(Format.fixed(1e25, 1) == "1.0e25")
        #expect(Format.fixed(-3e300, 1) == "-3.0e300")
        #expect(Format.fixed(9.96e20, 1) == "1.0e21")
        #expect(Format.fixed(123.456, 1) == "123.5" && Format.fixed(-0.04, 1) == "0.0")
        #expect(Format.count(1e25) == "1.0e25" && Format.count(-1e25) == "-1.0e25")
        #expect(Format.count(12_345_678) == "12.3M" && Format.count(42) == "42")
        #expect(Format.count(.nan) == "NaN" && Format.count(.infinity) == "+Inf")
        #expect(Format.count(-.infinity) == "-Inf")
        #expect(Format.bytes(.nan) == "NaN" && Format.bytes(1e30).hasSuffix(" TiB"))
        #expect(Format.bytes(2_048.0) == "2.0 KiB")
        #expect(Format.seconds(.infinity) == "+Inf" && Format.seconds(1e300) == "1.00e300s")
        #expect(Format.scientific(0, 1) == "0.0e0")
    }

    /// Any local client can report any value; `top` and `check` used to die on one past Int's range.
    @Test func topAndCheckShowHugeValues() throws {
        let daemon = try DaemonProcess()
        let sender = try SenderProcess(
            socket: daemon.socketPath,
            arguments: ["--process", "huge", "--task", "a=1e25", "--created", "1e30", "--hold", "60s"])
        #expect(try eventually { try daemon.value("taskwatch_clients") == 1 })
        let address = "127.0.0.1:\(daemon.port)"
        let top = try runProcess(taskwatchBinary, ["top", "--address", address, "--once", "--interval", "200ms"])
        #expect(top.status == 0, "\(top.errorOutput)")
        #expect(top.outputText.contains(" 1.0e25 "), "\(top.outputText)")
        let check = try runProcess(taskwatchBinary, ["check", "--socket", daemon.socketPath, "--address", address])
        #expect(check.status == 0, "\(check.errorOutput)")
        #expect(check.outputText.contains("huge pid \(sender.pid), 1.0e25 live tasks"), "\(check.outputText)")
    }

    /// A process first seen in the latest scrape has no rate: its counter holds everything since it
    /// started, which used to show as a spike in one interval.
    @Test func aProcessFirstSeenHasNoRateUntilTwoScrapes() {
        func snapshot(_ at: UInt64, _ text: String) -> MetricsSnapshot {
            MetricsSnapshot(nanoseconds: at, samples: PrometheusText.parse(text))
        }
        let before = snapshot(0, "swift_tasks_created_total{process=\"old\",pid=\"1\",task=\"t\"} 10")
        let after = snapshot(
            1_000_000_000,
            """
            swift_tasks{process="old",pid="1",task="t"} 1
            swift_tasks_created_total{process="old",pid="1",task="t"} 15
            swift_tasks{process="new",pid="2",task="t"} 1
            swift_tasks_created_total{process="new",pid="2",task="t"} 1000000
            """)
        let rows = ClientTable.sorted(ClientTable.rows(previous: before, current: after), by: .process)
        #expect(rows.map(\.process) == ["new", "old"])
        #expect(rows[0].createdPerSecond == nil && rows[1].createdPerSecond == 5)
    }

    /// A NaN value (any local client may report one) made the comparison inconsistent: with it among
    /// them, rows came out of order, 5 before 7.
    @Test func aNaNValueSortsLastWithoutDisorderingTheRest() {
        let text = [("a", "5"), ("b", "NaN"), ("c", "7"), ("d", "3")].map { process, live in
            "swift_tasks{process=\"\(process)\",pid=\"1\",task=\"t\"} \(live)"
        }.joined(separator: "\n")
        let rows = ClientTable.rows(
            previous: nil, current: MetricsSnapshot(nanoseconds: 0, samples: PrometheusText.parse(text)))
        for start in rows.indices {
            let rotated = Array(rows[start...] + rows[..<start])
            #expect(ClientTable.sorted(rotated, by: .live).map(\.process) == ["c", "a", "d", "b"])
        }
    }

    /// A lag count that did not move in the interval is a blocked executor (`SwiftExecutorStalled`):
    /// `top` showed the lifetime mean, a healthy figure, instead. An interval under a second proves
    /// nothing (a probe is due every 100 ms), and a process that left is not stalled.
    @Test func aLagCountThatDidNotMoveShowsAsStalled() {
        func snapshot(_ at: UInt64, count: Int, sum: Double = 0.01) -> MetricsSnapshot {
            let text = ["up", "gone"].map { process in
                let labels = "process=\"\(process)\",pid=\"\(process == "up" ? 1 : 2)\""
                return """
                    taskwatch_client_up{\(labels)} \(process == "up" ? 1 : 0)
                    swift_executor_lag_seconds_sum{\(labels)} \(sum)
                    swift_executor_lag_seconds_count{\(labels)} \(count)
                    """
            }.joined(separator: "\n")
            return MetricsSnapshot(nanoseconds: at, samples: PrometheusText.parse(text))
        }
        let first = snapshot(0, count: 100)
        let frozen = ClientTable.sorted(
            ClientTable.rows(previous: first, current: snapshot(2_000_000_000, count: 100)), by: .process)
        #expect(frozen.map(\.process) == ["gone", "up"])
        #expect(frozen[1].lagStalled && frozen[1].lag == nil)
        #expect(!frozen[0].lagStalled)
        #expect(ClientTable.render(frozen).contains(" stalled "), "\(ClientTable.render(frozen))")
        #expect(ClientTable.sorted(frozen, by: .lag).first?.process == "up", "a stall sorts as the worst lag")
        let soon = ClientTable.rows(previous: first, current: snapshot(500_000_000, count: 100))
        #expect(soon.allSatisfy { !$0.lagStalled })
        let moving = ClientTable.rows(previous: first, current: snapshot(2_000_000_000, count: 120, sum: 0.03))
        #expect(moving.allSatisfy { !$0.lagStalled && abs(($0.lag ?? 0) - 0.001) < 1e-12 })
    }

    /// A Ctrl-C during a scrape that hangs ends `top` at once and cleanly (it used to be ignored until
    /// the 5 s timeout, then exit 1); a failed scrape is shown and tried again, not the end of the view.
    @Test func topStopsAtOnceDuringAStalledScrapeAndRetriesAFailedOne() throws {
        let stalled = try SlowServer(trickle: false)
        let directory = ScratchDirectory()
        let top = try ChildProcess(
            taskwatchBinary, ["top", "--address", "127.0.0.1:\(stalled.port)", "--interval", "200ms"],
            output: directory.file("out"), errors: directory.file("err"))
        usleep(1_000_000)
        #expect(top.isRunning)
        let clock = ContinuousClock()
        let signalled = clock.now
        top.signal(SIGINT)
        let status = top.waitForExit(timeout: .seconds(3))
        #expect(status == 0 && clock.now - signalled < .seconds(1), "\(String(describing: status)) \(top.log)")

        let nobody = try freePort()
        let retrying = try ChildProcess(
            taskwatchBinary, ["top", "--address", "127.0.0.1:\(nobody)", "--interval", "100ms"],
            output: directory.file("out2"), errors: directory.file("err2"))
        #expect(eventually { retrying.log.components(separatedBy: "cannot connect").count > 3 }, "\(retrying.log)")
        #expect(retrying.isRunning)
        #expect(retrying.log.contains("; trying again every 100ms\n"), "\(retrying.log)")
        retrying.signal(SIGTERM)
        #expect(retrying.waitForExit() == 0)
    }

    /// The timeout covers the whole request: a server trickling a byte at a time used to hold `check`
    /// (and `top`) for as long as it liked, since the timeout was per read.
    @Test func aTricklingServerCannotHoldARequestPastItsTimeout() throws {
        let trickling = try SlowServer(trickle: true)
        let directory = ScratchDirectory()
        let clock = ContinuousClock()
        let started = clock.now
        let check = try runProcess(
            taskwatchBinary,
            [
                "check", "--socket", directory.file("absent.sock"), "--address", "127.0.0.1:\(trickling.port)",
                "--timeout", "1000",
            ], timeout: .seconds(20))
        #expect(clock.now - started < .seconds(5))
        #expect(check.status == 1, "\(check.outputText)")
        #expect(
            check.outputText.contains("FAIL  daemon HTTP: 127.0.0.1:\(trickling.port) did not answer within 1000 ms"),
            "\(check.outputText)")
    }

    /// EACCES on the socket is this user's lack of permission, not a stale socket file.
    @Test(
        .enabled(
            if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root (and setpriv) to run the check as nobody"))
    func checkSaysWhoMayConnectWhenPermissionIsDenied() throws {
        // The daemon makes the socket 0660, root's; its directory is open to all.
        let directory = ScratchDirectory(mode: 0o755)
        let socket = directory.file("run/ingest.sock")
        let port = try freePort()
        let daemon = try ChildProcess(
            builtExecutable("taskwatchd"),
            ["--web.listen-address", "127.0.0.1:\(port)", "--ingest.socket", socket], log: directory.file("log"))
        #expect(eventually { FileManager.default.fileExists(atPath: socket) }, "\(daemon.log)")
        let check = try runProcess(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", taskwatchBinary, "check", "--socket", socket,
                "--address", "127.0.0.1:\(port)",
            ])
        #expect(check.status == 1)
        #expect(
            check.outputText.contains(
                "FAIL  ingest socket \(socket): permission denied: this user may not connect (socket mode 0660, "
                    + "group root); join the group root, or point --socket or TASKWATCH_SOCKET at a socket"),
            "\(check.outputText)")
        #expect(!check.outputText.contains("stale"))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    /// Runs `taskwatch ARGUMENTS` on a pseudo-terminal of `columns` by `rows` until it has drawn two
    /// frames, then sends SIGINT; returns the last frame (after the last clear-screen) and the status.
    static func onTerminal(columns: Int, rows: Int, _ arguments: [String]) throws -> (frame: String, status: Int32) {
        let script = """
            import fcntl, os, pty, select, signal, struct, sys, termios, time
            columns, rows = int(sys.argv[1]), int(sys.argv[2])
            pid, fd = pty.fork()
            if pid == 0:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', rows, columns, 0, 0))
                os.execv(sys.argv[3], sys.argv[3:])
            out, clear, deadline = b'', b'\\x1b[H\\x1b[2J', time.time() + 60
            while out.count(clear) < 2 and time.time() < deadline:
                if select.select([fd], [], [], 0.1)[0]:
                    try: out += os.read(fd, 65536)
                    except OSError: break
            os.kill(pid, signal.SIGINT)
            while True:
                try: data = os.read(fd, 65536)
                except OSError: break
                if not data: break
                out += data
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            sys.stdout.buffer.write(out.split(clear)[-1] + b'\\nstatus ' + str(status).encode())
            """
        let result = try runProcess(
            "/usr/bin/python3", ["-c", script, String(columns), String(rows), taskwatchBinary] + arguments)
        let text = result.outputText.replacingOccurrences(of: "\r\n", with: "\n")
        guard let end = text.range(of: "\nstatus ", options: .backwards) else { return (text, -1) }
        return (String(text[..<end.lowerBound]), Int32(text[end.upperBound...]) ?? -1)
    }

    /// On a terminal `top` fits its view to the screen: its rows, some 100 columns wide, wrapped on an
    /// 80-column terminal and doubled the table's height, and a table taller than the screen scrolled
    /// its header away at every redraw.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func topFitsItsViewToTheTerminal() throws {
        let daemon = try DaemonProcess()
        let tasks = (1...6).flatMap { ["--task", "monitor\($0)=\($0)"] }
        let sender = try SenderProcess(socket: daemon.socketPath, arguments: tasks + ["--hold", "120s"])
        #expect(try eventually { try daemon.value("taskwatch_clients") == 1 })
        let top = ["top", "--address", "127.0.0.1:\(daemon.port)", "--interval", "100ms"]
        let small = try Self.onTerminal(columns: 50, rows: 6, top)
        #expect(small.status == 0)
        let lines = small.frame.split(separator: "\n", omittingEmptySubsequences: false)
        // Five lines and the newline after them: the header, the table's, two rows and the rest counted.
        #expect(lines.count == 6 && lines.last == "", "\(lines)")
        #expect(lines.allSatisfy { $0.count <= 50 }, "\(lines)")
        #expect(lines[0].hasPrefix("taskwatchd 127.0.0.1:\(daemon.port): 1 clients, 6 rows"), "\(lines)")
        #expect(lines[1].hasPrefix("PROCESS") && lines[2].contains(" monitor6 "), "\(lines)")
        #expect(lines[4] == "… 4 more rows (--limit, or a taller terminal)", "\(lines)")
        // A terminal that gives no size (0 by 0) gets the whole table.
        let unsized = try Self.onTerminal(columns: 0, rows: 0, top)
        #expect(unsized.frame.split(separator: "\n").count == 8, "\(unsized.frame)")
        #expect(unsized.frame.contains("  AGE\n") && unsized.frame.contains(" monitor1 "), "\(unsized.frame)")
        _ = sender
    }

    /// With TASKWATCH_DISABLED, `leak` and `stress` say nothing is counted instead of reporting zeros as
    /// measured to a socket they do not use.
    @Test func leakAndStressSayWhenInstrumentationIsDisabled() throws {
        let directory = ScratchDirectory()
        let socket = directory.file("absent.sock")
        let leak = try runProcess(
            "/usr/bin/env",
            ["TASKWATCH_DISABLED=1", taskwatchBinary, "leak", "stream", "--duration", "300ms", "--socket", socket])
        #expect(leak.status == 0 && leak.errorOutput.isEmpty, "\(leak.errorOutput)")
        let lines = leak.outputText.split(separator: "\n")
        #expect(
            lines.first?.hasSuffix("instrumentation is disabled (TASKWATCH_DISABLED): nothing is counted or reported")
                == true, "\(leak.outputText)")
        #expect(!leak.outputText.contains("reporting to") && !leak.outputText.contains("live="))
        #expect(lines.last?.contains("tasks not counted (instrumentation disabled)") == true)

        let stress = try runProcess(
            "/usr/bin/env",
            ["TASKWATCH_DISABLED=1", taskwatchBinary, "stress", "--tasks", "10", "--hold", "1ms", "--socket", socket])
        #expect(stress.status == 0)
        #expect(
            stress.errorOutput
                == "taskwatch stress: instrumentation is disabled (TASKWATCH_DISABLED): nothing is reported to "
                + "taskwatchd\n", "\(stress.errorOutput)")
        #expect(stress.outputText.contains("production, instrumentation disabled (TASKWATCH_DISABLED)"))
    }

    /// `--compare --duration` leaves the jobs unbounded as the help says (it passed --tasks 10000 to
    /// each child), and sizes the pool without a job count.
    @Test func compareWithADurationAloneBoundsNoJobs() throws {
        let timed = try StressCommand.parse(["--compare", "--duration", "2s"])
        #expect(!timed.childArguments(mode: .spawn).contains("--tasks"))
        let pool = timed.childArguments(mode: .pool)
        #expect(!pool.contains("--tasks"))
        #expect(pool.split(separator: "--concurrency").last?.first == String(StressOptions.defaultWorkers))
        let counted = try StressCommand.parse(["--compare", "--tasks", "4000", "--duration", "2s"])
        #expect(counted.childArguments(mode: .pool).joined(separator: " ").contains("--tasks 4000"))
        #expect(counted.childArguments(mode: .pool).joined(separator: " ").contains("--concurrency 400"))
        let plain = try StressCommand.parse(["--compare"])
        #expect(plain.childArguments(mode: .pool).joined(separator: " ").hasSuffix("--concurrency 1000"))
    }

    @Test(arguments: [
        (["stress", "--rate", "1e30"], "--rate must be from 0 to 10000000 jobs a second"),
        (["stress", "--rate", "nan"], "--rate must be from 0 to 10000000 jobs a second"),
        (["stress", "--limit", "18446744073709551615"], "--limit must be from 1 to 1000000000"),
        (["send", "--task", "a=1", "--task", "a=5"], "duplicate --task: a (give each task monitor once)"),
    ])
    func outOfRangeAndDuplicateInputIsAUsageError(arguments: [String], message: String) throws {
        let result = try runProcess(taskwatchBinary, arguments)
        #expect(result.status == 64)
        #expect(result.errorOutput.hasPrefix("Error: \(message)\n"), "\(result.errorOutput)")
    }

    /// `send` reports every `--interval`, however long (it slept 10 s at most), and stops when `--hold`
    /// ends, not up to an interval later.
    @Test func sendKeepsItsIntervalAndStopsAtTheHold() throws {
        let second: UInt64 = 1_000_000_000
        let minute = SendSchedule(interval: 60 * second, end: 150 * second)
        #expect(minute.next(after: 0) == (60 * second, true))
        #expect(minute.next(after: 60 * second) == (120 * second, true))
        #expect(minute.next(after: 120 * second) == (150 * second, false))

        let daemon = try DaemonProcess()
        let clock = ContinuousClock()
        let started = clock.now
        let send = try runProcess(
            taskwatchBinary, ["send", "--socket", daemon.socketPath, "--hold", "1s", "--interval", "1m"])
        let elapsed = clock.now - started
        #expect(send.status == 0, "\(send.errorOutput)")
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(4), "\(elapsed)")
    }

    @Test func theDemoRejectsANegativeRateAndAnswersHelpOnStdout() throws {
        let demo = builtExecutable("TaskWatchDemo")
        let help = try runProcess(demo, ["--help"])
        #expect(help.status == 0 && help.errorOutput.isEmpty)
        #expect(help.outputText.hasPrefix("usage: TaskWatchDemo "), "\(help.outputText)")
        // Bounded: a demo that takes the rate runs until stopped.
        let negative = try runProcess("/usr/bin/env", ["DEMO_RATE=-5", demo], timeout: .seconds(10))
        #expect(negative.status == 2 && negative.output.isEmpty)
        #expect(negative.errorOutput.hasPrefix("DEMO_RATE needs a non-negative number, not -5\n"))
        let flag = try runProcess(demo, ["--rate", "-5"])
        #expect(flag.status == 2 && flag.errorOutput.hasPrefix("--rate needs a non-negative number"))
    }
}
