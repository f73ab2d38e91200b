import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// "The client never blocks its host": the same spawn-heavy round with the daemon healthy, stopped
/// (SIGSTOP for the whole round; and stopped with its socket filled first, since a round-long stop
/// never fills it), absent, and killed half-way through the round, interleaved in one process that owns
/// the daemon. Each turn's dropped reports are counted, so a troubled turn that never met a full or
/// missing socket shows.
///
/// Why one process, and why pairs: separate processes per mode compare start-up luck and the
/// machine's drift as much as the modes (runs of the same binary differ by 10 % here), and even within
/// one process rounds a few seconds apart differ by 20 %. So every round of a troubled mode is paired
/// with a healthy round run right next to it, the order alternating from cycle to cycle, and the
/// figure for a mode is the median over cycles of its round divided by its healthy partner.
///
/// Matched partners: killing a process costs the kernel CPU time, on a small machine a few percent of
/// a round, whoever the process is. So the healthy partner of a killed round sees a bystander daemon
/// (one this process does not report to) killed at the same point, and the partner of an absent round
/// starts right after a bystander was killed and reaped, as the absent round starts right after ours
/// was. The pairs then differ only in what the client sees. The `bystander` pair measures the
/// kernel's share itself: a healthy round with the bystander killed mid-round against a plain healthy
/// one. `control` is healthy against healthy: the noise of the method.
///
/// Besides elapsed time, every round records the CPU time of the reporter thread (named `taskwatch`),
/// from its schedstat. The reporter is the only part of the client that touches the socket, so its
/// CPU per mode bounds what a troubled daemon can cost the workload far more tightly than elapsed
/// times on a noisy machine can.
///
/// Every time the daemon comes back (restarted after absent and killed rounds, continued after a
/// stopped one) the next round waits until the daemon's `/metrics` shows this process's created
/// count equal to the in-process one: the series came back complete. How long that took is reported.
enum NeverBlocks {
    static let monitor = TaskMonitor("never-blocks")

    /// What happens around one round.
    enum Turn: String, CaseIterable {
        /// Our daemon up and current.
        case healthy
        /// Healthy, right after the bystander was killed and reaped.
        case healthyAfterBystanderReaped
        /// Healthy, the bystander killed mid-round.
        case healthyBystanderKilled
        /// Our daemon SIGSTOPped for the whole round.
        case stopped
        /// Our daemon SIGSTOPped, then reports sent (`TaskWatch.flush`) until one is refused, so the
        /// round starts against a full socket: a round-long stop alone never fills it (about 30 ms of
        /// reports fit in the socket's buffer many times over, and such rounds dropped no report).
        case stoppedFull
        /// Healthy, after as many flushed reports as the last `stoppedFull` turn needed to fill the
        /// socket: its partner, with the same reporter work before the round.
        case healthyFlushed
        /// Our daemon killed and reaped before the round.
        case absent
        /// Our daemon killed mid-round.
        case killed
    }

    /// Two turns to compare: `candidate` over `baseline`.
    struct Pair {
        let name: String
        let baseline: Turn
        let candidate: Turn
    }

    static let pairs = [
        Pair(name: "control", baseline: .healthy, candidate: .healthy),
        Pair(name: "stopped", baseline: .healthy, candidate: .stopped),
        Pair(name: "absent", baseline: .healthyAfterBystanderReaped, candidate: .absent),
        Pair(name: "killed", baseline: .healthyBystanderKilled, candidate: .killed),
        Pair(name: "bystander", baseline: .healthy, candidate: .healthyBystanderKilled),
        Pair(name: "stoppedFull", baseline: .healthyFlushed, candidate: .stoppedFull),
    ]

    /// Starts the daemons, points this process's reporter at ours, runs `cycles` rotations of the
    /// pairs with `tasks` tasks a round; one JSON object.
    static func run(daemonPath: String, cycles: Int, tasks: Int) async -> String {
        let directory = makeTemporaryDirectory()
        let daemon = Daemon(path: daemonPath, directory: directory, name: "ours")
        let bystander = Daemon(path: daemonPath, directory: directory, name: "bystander")
        defer {
            for process in [daemon, bystander] {
                process.kill()
                unlink(process.socketPath)
                unlink(process.logPath)
            }
            rmdir(directory)
        }
        // The reporter reads its socket path when it starts.
        setenv("TASKWATCH_SOCKET", daemon.socketPath, 1)
        guard daemon.start(), bystander.start() else {
            return "{\"error\":\"taskwatchd did not start; see the logs in \(directory)\"}"
        }
        TaskWatch.start()
        guard let firstSync = daemon.waitForComplete(created: monitor.snapshot().created) else {
            return "{\"error\":\"the daemon never showed this process\"}"
        }
        guard let reporterThread = Measure.threadDirectory(named: "taskwatch") else {
            return "{\"error\":\"no reporter thread named taskwatch in /proc/self/task\"}"
        }

        var elapsed: [Turn: [UInt64]] = [:]
        var reporterCPU: [Turn: UInt64] = [:]
        var ratios: [String: [Double]] = [:]
        // How long the series took to come back complete, each time our daemon returned.
        var recoveries: [UInt64] = [firstSync]
        var resumed = false
        // Reports the client dropped during each turn, from the daemon's view of the client's counter at
        // the sync before the turn and at the one after it.
        var droppedByTurn: [Turn: Int] = [:]
        var lastDropped = daemon.reportsDropped() ?? 0
        var previousTurn: Turn? = nil
        // Flushed reports it took to fill the socket of a stopped daemon, per `stoppedFull` turn; the
        // last one is what its partner flushes.
        var fills: [Int] = []
        // One warm-up round, not counted.
        _ = await spawnRound(tasks, midway: nil)
        for cycle in 0..<cycles {
            for step in pairs.indices {
                let pair = pairs[(step + cycle) % pairs.count]
                var times: [UInt64] = []
                for turn in cycle % 2 == 0 ? [pair.baseline, pair.candidate] : [pair.candidate, pair.baseline] {
                    // Before the round: both daemons up, ours current, then what the turn wants.
                    let returned = resumed || !daemon.isRunning
                    resumed = false
                    if !daemon.isRunning, !daemon.start() { return "{\"error\":\"taskwatchd did not restart\"}" }
                    if !bystander.isRunning, !bystander.start() {
                        return "{\"error\":\"the bystander taskwatchd did not restart\"}"
                    }
                    guard let waited = daemon.waitForComplete(created: monitor.snapshot().created) else {
                        return "{\"error\":\"series did not come back complete after a restart\"}"
                    }
                    if returned { recoveries.append(waited) }
                    let droppedNow = daemon.reportsDropped() ?? lastDropped
                    if let previousTurn { droppedByTurn[previousTurn, default: 0] += droppedNow - lastDropped }
                    lastDropped = droppedNow
                    previousTurn = turn
                    switch turn {
                    case .healthy, .healthyBystanderKilled, .killed: break
                    case .healthyAfterBystanderReaped: bystander.kill()
                    case .stopped: daemon.signal(SIGSTOP)
                    case .stoppedFull:
                        daemon.signal(SIGSTOP)
                        guard let count = fillSocket(limit: 10_000) else {
                            return "{\"error\":\"the socket of a stopped daemon never filled\"}"
                        }
                        fills.append(count)
                    case .healthyFlushed:
                        for _ in 0..<(fills.last ?? 64) { TaskWatch.flush(timeout: .seconds(1)) }
                    case .absent: daemon.kill()
                    }
                    // Killed mid-round: the signal only. Reaping waits for the kernel to tear the daemon
                    // down, which would block a cooperative thread of the workload under test.
                    let victim: Daemon? =
                        switch turn {
                        case .killed: daemon
                        case .healthyBystanderKilled: bystander
                        default: nil
                        }
                    let cpuBefore = Measure.threadCPUNanoseconds(reporterThread) ?? 0
                    let time = await spawnRound(tasks, midway: victim.map { victim in { victim.signal(SIGKILL) } })
                    reporterCPU[turn, default: 0] += (Measure.threadCPUNanoseconds(reporterThread) ?? 0) &- cpuBefore
                    if turn == .stopped || turn == .stoppedFull {
                        daemon.signal(SIGCONT)
                        resumed = true
                    }
                    victim?.kill()
                    times.append(time)
                    elapsed[turn, default: []].append(time)
                }
                let (baseline, candidate) = cycle % 2 == 0 ? (times[0], times[1]) : (times[1], times[0])
                ratios[pair.name, default: []].append(Double(candidate) / Double(baseline))
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
        if let previousTurn, dropped >= 0 { droppedByTurn[previousTurn, default: 0] += dropped - lastDropped }

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
        let fillMedian = median(fills.map { UInt64($0) })
        fields.append("\"flushes_to_fill\":{\"median\":\(fillMedian),\"max\":\(fills.max() ?? 0)}")
        fields.append("\"recovery_ns\":{\"median\":\(median(recoveries)),\"max\":\(recoveries.max() ?? 0)}")
        var turnFields: [String] = []
        for turn in Turn.allCases {
            let values = elapsed[turn] ?? []
            let cpuShare = Double(reporterCPU[turn] ?? 0) / Double(max(values.reduce(0, +), 1))
            turnFields.append(
                "\"\(turn.rawValue)\":{\"median_ns\":\(median(values)),"
                    + "\"reporter_cpu_ns\":\(reporterCPU[turn] ?? 0),\"reporter_cpu_share\":\(cpuShare),"
                    + "\"reports_dropped\":\(droppedByTurn[turn] ?? 0),"
                    + "\"elapsed_ns\":[\(values.map(String.init).joined(separator: ","))]}")
        }
        fields.append("\"turns\":{" + turnFields.joined(separator: ",") + "}")
        var pairFields: [String] = []
        for pair in pairs {
            let values = ratios[pair.name] ?? []
            pairFields.append(
                "\"\(pair.name)\":{\"baseline\":\"\(pair.baseline.rawValue)\","
                    + "\"candidate\":\"\(pair.candidate.rawValue)\",\"ratio\":\(median(values)),"
                    + "\"ratios\":[\(values.map { String($0) }.joined(separator: ","))]}")
        }
        fields.append("\"pairs\":{" + pairFields.joined(separator: ",") + "}")
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Sends reports at once (`TaskWatch.flush`) until one is refused, as it is once the socket of a
    /// daemon that does not read is full; how many that took, or nil if none was refused in `limit`.
    static func fillSocket(limit: Int) -> Int? {
        for count in 1...limit where !TaskWatch.flush(timeout: .seconds(1)) { return count }
        return nil
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

    init(path: String, directory: String, name: String) {
        self.path = path
        socketPath = directory + "/\(name).sock"
        logPath = directory + "/\(name).log"
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
