import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// "The client never blocks its host": the same spawn-heavy round with the daemon healthy, stopped
/// (SIGSTOP for the whole round), absent, and killed half-way through the round, interleaved in one
/// process that owns the daemon.
///
/// Why one process, and why pairs: separate processes per mode compare start-up luck and the
/// machine's drift as much as the modes (runs of the same binary differ by 10 % here), and even within
/// one process rounds a few seconds apart differ by 20 %. So every round of a troubled mode is paired
/// with a healthy round run right next to it, the order alternating from cycle to cycle, and the
/// figure for a mode is the median over cycles of its round divided by its healthy partner.
///
/// Every time the daemon comes back (restarted after absent and killed rounds, continued after a
/// stopped one) the next round waits until the daemon's `/metrics` shows this process's created
/// count equal to the in-process one: the series came back complete. How long that took is reported.
enum NeverBlocks {
    static let monitor = TaskMonitor("never-blocks")

    enum Mode: String, CaseIterable {
        case healthy, stopped, absent, killed
    }

    /// Starts the daemon, points this process's reporter at it, runs `cycles` rotations of the four
    /// modes with `tasks` tasks a round; one JSON object.
    static func run(daemonPath: String, cycles: Int, tasks: Int) async -> String {
        let directory = makeTemporaryDirectory()
        let daemon = Daemon(path: daemonPath, directory: directory)
        defer {
            daemon.kill()
            unlink(daemon.socketPath)
            unlink(directory + "/daemon.log")
            rmdir(directory)
        }
        // The reporter reads its socket path when it starts.
        setenv("TASKWATCH_SOCKET", daemon.socketPath, 1)
        guard daemon.start() else { return "{\"error\":\"taskwatchd did not start; see \(directory)/daemon.log\"}" }
        TaskWatch.start()
        guard let firstSync = daemon.waitForComplete(created: monitor.snapshot().created) else {
            return "{\"error\":\"the daemon never showed this process\"}"
        }

        var elapsed: [Mode: [UInt64]] = [:]
        var ratios: [Mode: [Double]] = [:]
        var recoveries: [UInt64] = [firstSync]
        // One warm-up round, not counted.
        _ = await spawnRound(tasks, midway: nil)
        let troubled: [Mode] = [.stopped, .absent, .killed]
        for cycle in 0..<cycles {
            for step in troubled.indices {
                let mode = troubled[(step + cycle) % troubled.count]
                var pair: [Mode: UInt64] = [:]
                for turn in cycle % 2 == 0 ? [Mode.healthy, mode] : [mode, .healthy] {
                    // Before the round: the daemon up and current, or not, as the mode wants.
                    switch turn {
                    case .healthy, .stopped, .killed:
                        if !daemon.isRunning {
                            guard daemon.start() else { return "{\"error\":\"taskwatchd did not restart\"}" }
                        }
                        guard let waited = daemon.waitForComplete(created: monitor.snapshot().created) else {
                            return "{\"error\":\"series did not come back complete after a restart\"}"
                        }
                        recoveries.append(waited)
                        if turn == .stopped { daemon.signal(SIGSTOP) }
                    case .absent:
                        daemon.kill()
                    }
                    let time = await spawnRound(tasks, midway: turn == .killed ? { daemon.kill() } : nil)
                    if turn == .stopped { daemon.signal(SIGCONT) }
                    pair[turn] = time
                    elapsed[turn, default: []].append(time)
                }
                if let healthy = pair[.healthy], let troubled = pair[mode] {
                    ratios[mode, default: []].append(Double(troubled) / Double(healthy))
                }
            }
        }
        // The end state: the daemon back, every count delivered, the drops visible.
        if !daemon.isRunning, !daemon.start() { return "{\"error\":\"taskwatchd did not restart\"}" }
        let created = monitor.snapshot().created
        guard let finalSync = daemon.waitForComplete(created: created) else {
            return "{\"error\":\"series did not come back complete at the end\"}"
        }
        recoveries.append(finalSync)
        let dropped = daemon.reportsDropped() ?? -1

        func median(_ values: [UInt64]) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : Double(sorted[sorted.count / 2])
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }
        var fields = ["\"tasks_per_round\":\(tasks)", "\"cycles\":\(cycles)", "\"created\":\(created)"]
        fields.append("\"live\":\(monitor.snapshot().live)")
        fields.append("\"reports_dropped\":\(dropped)")
        fields.append("\"restarts\":\(daemon.starts - 1)")
        fields.append("\"recovery_ns\":{\"median\":\(median(recoveries)),\"max\":\(recoveries.max() ?? 0)}")
        for mode in Mode.allCases {
            let values = elapsed[mode] ?? []
            let ratio = mode == .healthy ? 1 : median(ratios[mode] ?? [])
            fields.append(
                "\"\(mode.rawValue)\":{\"median_ns\":\(median(values)),\"ratio\":\(ratio),"
                    + "\"ratios\":[\((ratios[mode] ?? []).map { String($0) }.joined(separator: ","))],"
                    + "\"elapsed_ns\":[\(values.map(String.init).joined(separator: ","))]}")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// `count` tasks through the monitor in batches of 1,000, each batch awaited; `midway` runs once
    /// half of them are done. Returns the elapsed nanoseconds.
    static func spawnRound(_ count: Int, midway: (() -> Void)?) async -> UInt64 {
        let start = Measure.cpuNanoseconds(CLOCK_MONOTONIC)
        var remaining = count
        var midwayDone = midway == nil
        var batch: [Task<Int, Never>] = []
        batch.reserveCapacity(1_000)
        while remaining > 0 {
            for index in 0..<min(1_000, remaining) { batch.append(monitor.task { index }) }
            remaining -= batch.count
            for task in batch { _ = await task.value }
            batch.removeAll(keepingCapacity: true)
            if !midwayDone, remaining <= count / 2 {
                midway?()
                midwayDone = true
            }
        }
        return Measure.cpuNanoseconds(CLOCK_MONOTONIC) - start
    }

    static func makeTemporaryDirectory() -> String {
        var template = Array("/tmp/tw-never-blocks.XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress, let made = mkdtemp(base) else { return "/tmp" }
            return String(cString: made)
        }
    }
}

/// A `taskwatchd` child process on a socket in `directory` and a free loopback port.
final class Daemon {
    let path: String
    let socketPath: String
    let logPath: String
    private(set) var port: UInt16 = 0
    private(set) var pid: pid_t = 0
    private(set) var starts = 0

    init(path: String, directory: String) {
        self.path = path
        socketPath = directory + "/ingest.sock"
        logPath = directory + "/daemon.log"
    }

    var isRunning: Bool { pid != 0 }

    /// Starts the daemon and waits for `/-/ready`; false if it never answered.
    func start() -> Bool {
        unlink(socketPath)
        port = Self.freePort()
        let arguments = [
            path, "--ingest.socket", socketPath, "--web.listen-address", "127.0.0.1:\(port)", "--client.grace", "2s",
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var child: pid_t = 0
        guard posix_spawn(&child, path, &actions, nil, &argv, environ) == 0 else { return false }
        pid = child
        starts += 1
        let ready = MetricsPoller.poll(port: port, path: "/-/ready", timeoutNanoseconds: 10_000_000_000) { _ in true }
        return ready != nil
    }

    func signal(_ signal: Int32) {
        if pid != 0 { Glibc.kill(pid, signal) }
    }

    /// SIGKILL and reap.
    func kill() {
        guard pid != 0 else { return }
        Glibc.kill(pid, SIGCONT)
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pid = 0
    }

    /// Waits until `/metrics` shows `created` tasks created for `NeverBlocks.monitor` of this
    /// process; the nanoseconds that took, or nil after 10 s.
    func waitForComplete(created: UInt64) -> UInt64? {
        let selector = MetricsPoller.Selector(
            name: "swift_tasks_created_total", pid: getpid(), task: NeverBlocks.monitor.name)
        let start = Measure.cpuNanoseconds(CLOCK_MONOTONIC)
        let done = MetricsPoller.poll(port: port, timeoutNanoseconds: 10_000_000_000) { text in
            MetricsPoller.value(selector, in: text) == Double(created)
        }
        return done.map { $0 - start }
    }

    /// This process's `swift_taskwatch_reports_dropped_total` as the daemon shows it.
    func reportsDropped() -> Int? {
        let selector = MetricsPoller.Selector(name: "swift_taskwatch_reports_dropped_total", pid: getpid())
        return MetricsPoller.fetch(port: port).flatMap { MetricsPoller.value(selector, in: $0) }.map { Int($0) }
    }

    static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        return UInt16(bigEndian: address.sin_port)
    }
}
