import Foundation
import TaskWatchTestSupport
import Testing

@testable import TaskWatchCLI

/// The built `taskwatch` binary path.
let taskwatchBinary = builtExecutable("taskwatch")

/// A long-running `taskwatch` child, killed (it and nothing else) when the test lets go of it.
final class CLIProcess {
    let child: ChildProcess

    init(_ arguments: [String]) throws {
        child = try ChildProcess(taskwatchBinary, arguments)
    }

    var pid: Int32 { child.pid }
}

/// Every sample of `/metrics` named `name` whose labels include `labels`.
func samples(_ text: String, _ name: String, _ labels: [String: String]) -> [Double] {
    PrometheusText.parse(text).filter { sample in
        sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
    }.map(\.value)
}

/// `taskwatch leak`, `stress`, `top` and `check` against the real daemon.
@Suite(.serialized) struct CLIEndToEndTests {
    @Test func everyLeakRaisesLiveTasksSteadilyAndItsFixedTwinStaysFlat() throws {
        let daemon = try DaemonProcess()
        var leaky: [(LeakScenario, CLIProcess)] = []
        var fixed: [(LeakScenario, CLIProcess)] = []
        for scenario in LeakScenario.allCases {
            let common = ["leak", scenario.rawValue, "--socket", daemon.socketPath, "--rate", "50"]
            leaky.append((scenario, try CLIProcess(common + ["--process", "leaky"])))
            fixed.append((scenario, try CLIProcess(common + ["--process", "fixed", "--fixed"])))
        }
        func live(_ text: String, _ scenario: LeakScenario, _ child: CLIProcess) -> Double? {
            samples(text, "swift_tasks", ["pid": String(child.pid), "task": scenario.rawValue]).first
        }
        // Wait until every process reports, then sample every 300 ms for 2.4 s.
        #expect(
            try eventually {
                let text = try daemon.metrics()
                return (leaky + fixed).allSatisfy { live(text, $0.0, $0.1) != nil }
            })
        var series: [Int32: [Double]] = [:]
        for _ in 0..<9 {
            let text = try daemon.metrics()
            for (scenario, child) in leaky + fixed {
                series[child.pid, default: []].append(live(text, scenario, child) ?? -1)
            }
            usleep(300_000)
        }
        let text = try daemon.metrics()
        for (scenario, child) in leaky {
            let values = series[child.pid] ?? []
            let rises = zip(values, values.dropFirst()).filter { $1 > $0 }.count
            let falls = zip(values, values.dropFirst()).filter { $1 < $0 }.count
            #expect(falls == 0, "\(scenario) leaky fell: \(values)")
            #expect(rises >= 6, "\(scenario) leaky did not rise steadily: \(values)")
            #expect((values.last ?? 0) - (values.first ?? 0) >= 60, "\(scenario) leaky grew too little: \(values)")
        }
        for (scenario, child) in fixed {
            let values = series[child.pid] ?? []
            #expect(values.allSatisfy { $0 >= 0 && $0 <= 25 }, "\(scenario) fixed not flat: \(values)")
            let created = samples(
                text, "swift_tasks_created_total", ["pid": String(child.pid), "task": scenario.rawValue]
            ).first
            #expect((created ?? 0) >= 100, "\(scenario) fixed did no work: \(String(describing: created))")
        }
    }

    @Test func feedbackLoopHoldsLiveTasksWithinTenPercentOfTheLimit() throws {
        let daemon = try DaemonProcess()
        let limit = 200
        // At 1000 jobs/s held 2 s, the workload reaches 2000 live tasks: ten times the limit.
        let workload = ["stress", "--socket", daemon.socketPath, "--rate", "1000", "--hold", "2s", "--json", "--quiet"]
        let limited = Thread.detachedResult {
            try runProcess(
                taskwatchBinary, workload + ["--duration", "5s", "--limit", String(limit), "--process", "limited"])
        }
        let unlimited = try runProcess(taskwatchBinary, workload + ["--duration", "2.2s", "--process", "unlimited"])
        #expect(unlimited.status == 0, "\(unlimited.errorOutput)")
        let control = try JSONDecoder().decode(StressReport.self, from: unlimited.output)
        #expect(control.peakLiveTasks >= 9 * limit, "the workload alone peaked at \(control.peakLiveTasks)")

        // While the limited run goes on, the daemon's peak series stays within 10 % too.
        var daemonPeak = 0.0
        var seen = false
        let deadline = Date().addingTimeInterval(2.5)
        while Date() < deadline {
            let peaks = samples(try daemon.metrics(), "swift_tasks_peak", ["process": "limited"])
            if let peak = peaks.first {
                seen = true
                daemonPeak = max(daemonPeak, peak)
            }
            usleep(100_000)
        }
        #expect(seen)
        #expect(daemonPeak <= 1.1 * Double(limit), "swift_tasks_peak reached \(daemonPeak)")

        let result = try limited.value()
        #expect(result.status == 0, "\(result.errorOutput)")
        let report = try JSONDecoder().decode(StressReport.self, from: result.output)
        let stats = try #require(report.limitStats)
        #expect(stats.warmupSeconds != nil)
        #expect(stats.peakAfterWarmup <= limit + limit / 10, "peak after warm-up \(stats.peakAfterWarmup)")
        #expect(report.peakLiveTasks <= limit + limit / 10, "peak \(report.peakLiveTasks)")
        #expect(abs(stats.meanAfterWarmup - Double(limit)) <= 0.1 * Double(limit), "mean \(stats.meanAfterWarmup)")
        #expect(report.jobs >= 2 * limit, "only \(report.jobs) jobs admitted")
    }

    @Test func compareReportsSpawnAgainstPoolAndMemoryAfterDrain() throws {
        let daemon = try DaemonProcess()
        let result = try runProcess(
            taskwatchBinary,
            [
                "stress", "--compare", "--tasks", "4000", "--hold", "300ms", "--json", "--quiet", "--socket",
                daemon.socketPath,
            ])
        #expect(result.status == 0, "\(result.errorOutput)")
        let reports = try JSONDecoder().decode([StressReport].self, from: result.output)
        #expect(reports.map(\.mode) == ["spawn", "pool"])
        let spawn = reports[0]
        let pool = reports[1]
        #expect(spawn.jobs == 4000 && pool.jobs == 4000)
        #expect(spawn.peakLiveTasks >= 3000, "spawn peaked at \(spawn.peakLiveTasks)")
        // A suspended task costs 1.5 to 2.2 KB of heap on this platform (PLATFORM-NOTES.md).
        #expect(
            spawn.heapBytesPerLiveTask > 1_000 && spawn.heapBytesPerLiveTask < 8_000, "\(spawn.heapBytesPerLiveTask)")
        #expect(pool.peakLiveTasks == 400, "the pool has tasks/10 workers: \(pool.peakLiveTasks)")
        #expect(pool.heapBytesPerJob < spawn.heapBytesPerJob / 2, "\(pool.heapBytesPerJob) vs \(spawn.heapBytesPerJob)")
        #expect(spawn.drainSeconds >= 0.2 && spawn.completionRate > 0 && spawn.creationRate > 0)
        for report in reports { #expect(report.afterTrim.rssBytes <= report.afterDrain.rssBytes) }

        let text = try runProcess(
            taskwatchBinary,
            ["stress", "--compare", "--tasks", "500", "--hold", "50ms", "--quiet", "--socket", daemon.socketPath])
        let output = text.outputText
        #expect(output.contains("heap per live task") && output.contains("RSS after malloc_trim"), "\(output)")
        #expect(output.split(separator: "\n").first?.contains("pool") == true, "\(output)")
    }

    @Test func groupModeReportsWhileRunningWithPlainProgressLines() throws {
        let daemon = try DaemonProcess()
        let socket = daemon.socketPath
        let run = Thread.detachedResult {
            try runProcess(
                taskwatchBinary,
                ["stress", "--mode", "group", "--tasks", "3000", "--hold", "1500ms", "--json", "--socket", socket])
        }
        #expect(
            try eventually(timeout: .seconds(5)) {
                samples(try daemon.metrics(), "swift_tasks", ["process": "taskwatch-stress", "task": "stress-group"])
                    .contains { $0 >= 2_500 }
            })
        let result = try run.value()
        #expect(result.status == 0, "\(result.errorOutput)")
        let report = try JSONDecoder().decode(StressReport.self, from: result.output)
        #expect(report.mode == "group" && report.peakLiveTasks == 3000)
        // Not a terminal: progress comes as plain lines on stderr, no escape sequences.
        #expect(
            result.errorOutput.contains("stress group t=") && result.errorOutput.contains("live="),
            "\(result.errorOutput)")
        #expect(!result.errorOutput.contains("\u{1B}["))
    }

    @Test func topListsClientsSortedWithRates() throws {
        let daemon = try DaemonProcess()
        let busy = try SenderProcess(
            socket: daemon.socketPath,
            arguments: [
                "--process", "busy", "--task", "requests=50", "--created", "1000", "--grow", "10", "--hold", "60s",
                "--interval", "50ms",
            ])
        let quiet = try SenderProcess(
            socket: daemon.socketPath, arguments: ["--process", "quiet", "--task", "idle=5", "--hold", "60s"])
        #expect(try eventually { try daemon.value("taskwatch_clients") == 2 })
        let address = "127.0.0.1:\(daemon.port)"
        let byLive = try runProcess(taskwatchBinary, ["top", "--address", address, "--once", "--interval", "500ms"])
        #expect(byLive.status == 0, "\(byLive.errorOutput)")
        let lines = byLive.outputText.split(separator: "\n")
        #expect(lines.count == 4, "\(lines)")
        #expect(lines[0].contains("2 clients") && lines[1].hasPrefix("PROCESS") && lines[1].hasSuffix("  AGE"))
        // Both report every 50 or 100 ms: their last report is seconds old at most, even on a loaded
        // machine (the bound is loose; it tells an age from a raw timestamp).
        for line in lines[2...] {
            let age = line.split(separator: " ").last.map(String.init) ?? ""
            #expect(age.hasSuffix("s") && (Double(age.dropLast()) ?? 99) < 5, "\(line)")
        }
        #expect(lines[2].hasPrefix("busy") && lines[2].contains(" \(busy.pid) ") && lines[3].hasPrefix("quiet"))
        // busy's created counter grows 10 per 50 ms: about 200/s.
        let columns = lines[2].split(separator: " ")
        let created = Double(columns[5]) ?? 0
        #expect(created > 100 && created < 300, "\(lines[2])")
        #expect(lines[3].contains(" \(quiet.pid) ") && lines[3].split(separator: " ")[5] == "0.0")

        let byProcess = try runProcess(
            taskwatchBinary, ["top", "--address", address, "--once", "--interval", "100ms", "--sort", "pid"])
        let pidLines = byProcess.outputText.split(separator: "\n").dropFirst(2)
        let pids = pidLines.compactMap { Int32($0.split(separator: " ")[1]) }
        #expect(pids == [busy.pid, quiet.pid].sorted())

        let down = try runProcess(taskwatchBinary, ["top", "--address", "127.0.0.1:\(freePort())", "--once"])
        #expect(down.status == 1 && down.errorOutput.contains("cannot connect"), "\(down.errorOutput)")
    }

    @Test func checkPassesOnAHealthyHostAndNamesEachFailure() throws {
        let daemon = try DaemonProcess()
        let sender = try SenderProcess(
            socket: daemon.socketPath, arguments: ["--process", "checked", "--task", "default=3", "--hold", "60s"])
        #expect(try eventually { try daemon.value("taskwatch_clients") == 1 })
        let address = "127.0.0.1:\(daemon.port)"
        let healthy = try runProcess(taskwatchBinary, ["check", "--socket", daemon.socketPath, "--address", address])
        let output = healthy.outputText
        #expect(healthy.status == 0, "\(output) \(healthy.errorOutput)")
        #expect(output.contains("accepts connections") && output.contains("taskwatchd version 0.1.0"), "\(output)")
        #expect(output.contains("1 process connected") && output.contains("checked pid \(sender.pid), 3 live tasks"))
        // Checking did not leave a client behind.
        #expect(try daemon.value("taskwatch_clients") == 1)

        let missing = try runProcess(
            taskwatchBinary, ["check", "--socket", daemon.directory.file("absent.sock"), "--address", address])
        #expect(missing.status == 1)
        #expect(missing.outputText.contains("No such file or directory"))

        let regular = daemon.directory.file("plain-file")
        _ = FileManager.default.createFile(atPath: regular, contents: Data())
        let notSocket = try runProcess(taskwatchBinary, ["check", "--socket", regular, "--address", address])
        #expect(notSocket.status == 1 && notSocket.outputText.contains("not a socket"))

        let noHTTP = try runProcess(
            taskwatchBinary, ["check", "--socket", daemon.socketPath, "--address", "127.0.0.1:\(freePort())"])
        #expect(noHTTP.status == 2, "\(noHTTP.errorOutput)")
        #expect(noHTTP.outputText.contains("FAIL  daemon HTTP: cannot connect"))

        daemon.stop()
        let stopped = try runProcess(taskwatchBinary, ["check", "--socket", daemon.socketPath, "--address", address])
        #expect(stopped.status == 1, "\(stopped.outputText)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func checkAndTopSayWhatToDoAboutADaemonServingTLS() throws {
        let directory = ScratchDirectory()
        let authority = try TestCertificates(in: directory)
        try authority.issue("server", subjectAltName: "IP:127.0.0.1", extendedKeyUsage: "serverAuth")
        try directory.write("web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
        let port = try freePort()
        let socket = directory.file("ingest.sock")
        let daemon = try ChildProcess(
            builtExecutable("taskwatchd"),
            [
                "--web.config.file", directory.file("web.yml"), "--web.listen-address", "127.0.0.1:\(port)",
                "--ingest.socket", socket,
            ], errors: directory.file("daemon.log"))
        #expect(eventually { daemon.log.contains("Listening") }, "\(daemon.log)")

        let advice = "the endpoint speaks TLS; the taskwatch CLI needs a plain-HTTP listener"
        let check = try runProcess(taskwatchBinary, ["check", "--socket", socket, "--address", "127.0.0.1:\(port)"])
        #expect(check.status == 2, "\(check.outputText)")
        #expect(check.outputText.contains("FAIL  daemon HTTP: 127.0.0.1:\(port): \(advice)"), "\(check.outputText)")
        let plain = try runProcess(taskwatchBinary, ["top", "--address", "127.0.0.1:\(port)", "--once"])
        #expect(plain.status == 1)
        #expect(plain.errorOutput.hasPrefix("taskwatch top: 127.0.0.1:\(port): \(advice)"), "\(plain.errorOutput)")
        let top = try runProcess(taskwatchBinary, ["top", "--address", "https://127.0.0.1:\(port)", "--once"])
        #expect(top.status == 1)
        #expect(top.errorOutput.hasPrefix("taskwatch top: https://127.0.0.1:\(port): \(advice)"), "\(top.errorOutput)")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }
}

/// The pure pieces of the tool.
@Suite struct CLIUnitTests {
    @Test func prometheusTextHandlesEscapesAndSpecialValues() {
        let text = """
            # HELP swift_tasks Live tasks.
            swift_tasks{process="a \\"b\\"",pid="1",task="x\\\\y\\nz"} 42
            build_info{version="0.1.0"} 1 1700000000000
            lag +Inf
            bare 3.5e2
            """
        let parsed = PrometheusText.parse(text)
        #expect(parsed.count == 4)
        #expect(parsed[0].labels == ["process": "a \"b\"", "pid": "1", "task": "x\\y\nz"])
        #expect(parsed[0].value == 42)
        #expect(parsed[1].value == 1)
        #expect(parsed[2].value == .infinity)
        #expect(parsed[3].value == 350)
    }

    @Test func clientTableComputesRatesFromTwoScrapes() {
        func snapshot(_ at: UInt64, _ created: Double) -> MetricsSnapshot {
            MetricsSnapshot(
                nanoseconds: at,
                samples: PrometheusText.parse(
                    """
                    swift_tasks{process="p",pid="7",task="t"} 3
                    swift_tasks_created_total{process="p",pid="7",task="t"} \(created)
                    swift_tasks_finished_total{process="p",pid="7",task="t",outcome="success"} 1
                    taskwatch_client_up{process="p",pid="7"} 1
                    taskwatch_client_up{process="q",pid="8"} 0
                    """))
        }
        let rows = ClientTable.sorted(
            ClientTable.rows(previous: snapshot(0, 10), current: snapshot(2_000_000_000, 30)), by: .live)
        #expect(rows.count == 2)
        #expect(rows[0].task == "t" && rows[0].createdPerSecond == 10 && rows[0].finishedPerSecond == 0)
        #expect(rows[1].process == "q" && rows[1].task == "-" && !rows[1].up)
    }

    /// The controller against a simulated workload that would reach ten times the limit.
    @Test func admissionControllerKeepsASimulatedWorkloadNearTheLimit() {
        let limit: UInt64 = 500
        let step: UInt64 = 1_000_000
        let holdSteps = 2_000
        var controller = AdmissionController(limit: limit, ceiling: 2_500)
        var bucket = TokenBucket()
        var admittedAt = [Int](repeating: 0, count: 6_000)
        var live = 0
        var peakAfterWarmup = 0
        var warm = false
        for now in 0..<6_000 {
            if now >= holdSteps { live -= admittedAt[now - holdSteps] }
            if live >= Int(limit) { warm = true }
            if warm { peakAfterWarmup = max(peakAfterWarmup, live) }
            let rate = controller.update(live: UInt64(live))
            let count = bucket.admit(rate: rate, elapsedNanoseconds: step, stepNanoseconds: step)
            admittedAt[now] = count
            live += count
        }
        #expect(warm)
        #expect(peakAfterWarmup <= 550, "peak \(peakAfterWarmup)")
        #expect(live >= 450, "live \(live) at the end")
    }
}

extension Thread {
    /// Runs `body` on a new thread; `value()` waits for its result.
    static func detachedResult<T>(_ body: @escaping @Sendable () throws -> T) -> ThreadResult<T> {
        let result = ThreadResult<T>()
        let thread = Thread { result.set(Result { try body() }) }
        thread.start()
        return result
    }
}

final class ThreadResult<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<T, any Error>?

    func set(_ value: Result<T, any Error>) {
        condition.lock()
        result = value
        condition.broadcast()
        condition.unlock()
    }

    func value() throws -> T {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return try result!.get()
    }
}
