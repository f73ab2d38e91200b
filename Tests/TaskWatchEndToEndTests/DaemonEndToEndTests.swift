import Foundation
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// The real `taskwatchd` binary with real sender processes, checked through real HTTP.
@Suite(.serialized) struct DaemonEndToEndTests {
    @Test func severalSendersShowExactValuesWithTheirKernelPids() throws {
        let daemon = try DaemonProcess()
        let senders = try (0..<3).map { index in
            try SenderProcess(
                socket: daemon.socketPath,
                arguments: [
                    "--process", "worker", "--claim-pid", "1", "--task", "default=\(10 + index)",
                    "--task", "heartbeat=\(index)", "--created", "\(100 * index)", "--hold", "60s",
                    "--interval", "50ms",
                ])
        }
        for (index, sender) in senders.enumerated() {
            let live = "swift_tasks{process=\"worker\",pid=\"\(sender.pid)\",task=\"default\"}"
            #expect(try eventually { try daemon.value(live) == Double(10 + index) }, "\((try? daemon.metrics()) ?? "")")
            let beat = "swift_tasks{process=\"worker\",pid=\"\(sender.pid)\",task=\"heartbeat\"}"
            #expect(try daemon.value(beat) == Double(index))
            let created = "swift_tasks_created_total{process=\"worker\",pid=\"\(sender.pid)\",task=\"default\"}"
            #expect(try daemon.value(created) == Double(100 * index))
            #expect(try daemon.value("taskwatch_client_up{process=\"worker\",pid=\"\(sender.pid)\"}") == 1)
            #expect(
                try daemon.value("swift_process_start_time_seconds{process=\"worker\",pid=\"\(sender.pid)\"}") != nil)
        }
        let text = try daemon.metrics()
        // One series per (process, pid, task); the claimed pid 1 never appears.
        let liveLines = text.split(separator: "\n").filter { $0.hasPrefix("swift_tasks{") }
        #expect(liveLines.count == 6)
        #expect(!text.contains("pid=\"1\""))
        #expect(try daemon.value("taskwatch_clients") == 3)
        try expectValidExposition(Data(text.utf8))
    }

    /// A sender that dies without a goodbye (a crash) shows `taskwatch_client_up 0` with its last values
    /// through `--client.grace`, then vanishes.
    @Test func aSenderThatDiesGoesDownThenVanishesAfterGrace() throws {
        let daemon = try DaemonProcess()
        let sender = try SenderProcess(
            socket: daemon.socketPath, arguments: ["--process", "short", "--task", "default=7", "--hold", "60s"])
        let pid = sender.pid
        let live = "swift_tasks{process=\"short\",pid=\"\(pid)\",task=\"default\"}"
        #expect(try eventually { try daemon.value(live) == 7 })
        sender.child.signal(SIGKILL)
        _ = sender.wait()
        #expect(try eventually { try daemon.value("taskwatch_client_up{process=\"short\",pid=\"\(pid)\"}") == 0 })
        #expect(try daemon.value(live) == 7)
        // --client.grace is 2s in these tests.
        #expect(try eventually(timeout: .seconds(5)) { try daemon.value(live) == nil })
        #expect(try daemon.value("taskwatch_client_up{process=\"short\",pid=\"\(pid)\"}") == nil)
        #expect(try daemon.value("taskwatch_series") == 0)
    }

    /// A sender that says goodbye leaves on purpose: its series go as soon as it closes, no grace.
    @Test func aSenderThatSaysGoodbyeVanishesAtOnce() throws {
        let daemon = try DaemonProcess(arguments: ["--client.grace", "60s"])
        let sender = try SenderProcess(
            socket: daemon.socketPath, arguments: ["--process", "short", "--task", "default=7", "--hold", "300ms"])
        let pid = sender.pid
        let live = "swift_tasks{process=\"short\",pid=\"\(pid)\",task=\"default\"}"
        #expect(try eventually { try daemon.value(live) == 7 })
        #expect(sender.wait() == 0)
        #expect(try eventually { try daemon.value(live) == nil })
        #expect(try daemon.value("taskwatch_client_up{process=\"short\",pid=\"\(pid)\"}") == nil)
        #expect(try daemon.value("taskwatch_series") == 0)
    }

    @Test func senderResumesAfterDaemonRestartAndCountersNeverGoBack() throws {
        let directory = ScratchDirectory()
        let port = try freePort()
        var daemon: DaemonProcess? = try DaemonProcess(directory: directory, port: port)
        let socketPath = daemon!.socketPath
        let sender = try SenderProcess(
            socket: socketPath,
            arguments: [
                "--process", "resume", "--created", "1000", "--grow", "1", "--hold", "60s", "--interval", "20ms",
            ])
        let series = "swift_tasks_created_total{process=\"resume\",pid=\"\(sender.pid)\",task=\"default\"}"
        var before = 0.0
        #expect(
            try eventually {
                before = try daemon!.value(series) ?? 0; return before > 1010
            })
        daemon!.stop()
        daemon = nil
        // A new daemon on the same socket path and port, as after a restart.
        let restarted = try DaemonProcess(directory: directory, port: port)
        var after = 0.0
        #expect(
            try eventually {
                after = try restarted.value(series) ?? 0; return after > 0
            })
        #expect(after >= before, "counter went back from \(before) to \(after)")
        var previous = after
        for _ in 0..<10 {
            let now = try restarted.value(series) ?? 0
            #expect(now >= previous)
            previous = now
            usleep(30_000)
        }
    }

    /// Go daemons ignore SIGUSR1 and SIGUSR2; their default action ended taskwatchd and left its socket.
    /// The first log line names the version, as an operator reading a journal needs.
    @Test func sigusr1AndSigusr2DoNotStopTheDaemonAndStartupLogsTheVersion() throws {
        let daemon = try DaemonProcess()
        daemon.signal(SIGUSR1)
        daemon.signal(SIGUSR2)
        usleep(200_000)
        #expect(try fetch(daemon.url("/-/healthy")).status == 200)
        let first = daemon.log.split(separator: "\n").first ?? ""
        #expect(first.contains("msg=\"Starting taskwatchd\"") && first.contains(" version="), "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }

    /// A web config that cannot be used stops startup with a log line in the chosen format.
    @Test func aBadWebConfigIsLoggedInTheChosenFormat() throws {
        let directory = ScratchDirectory()
        let result = try runProcess(
            builtExecutable("taskwatchd"),
            [
                "--web.config.file", directory.file("absent.yml"), "--log.format", "json",
                "--ingest.socket", directory.file("ingest.sock"),
            ])
        #expect(result.status == 1)
        let lines = result.errorOutput.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "\(line)")
        }
        #expect(result.errorOutput.contains("absent.yml"), "\(result.errorOutput)")
    }

    @Test func sigtermRemovesTheSocketItCreated() throws {
        let daemon = try DaemonProcess()
        #expect(FileManager.default.fileExists(atPath: daemon.socketPath))
        #expect(daemon.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
        #expect(daemon.log.contains("Shutting down"))
    }

    @Test func aLiveDaemonIsNeverDisplacedAndBadFlagsFailClearly() throws {
        let daemon = try DaemonProcess()
        let second = try runProcess(
            builtExecutable("taskwatchd"),
            ["--ingest.socket", daemon.socketPath, "--web.listen-address", "127.0.0.1:\(freePort())"])
        #expect(second.status != 0)
        #expect(second.errorOutput.contains("another taskwatchd is listening"))
        let badFlag = try runProcess(
            builtExecutable("taskwatchd"), ["--client.grace", "soon"])
        #expect(badFlag.status != 0)
        #expect(badFlag.errorOutput.contains("--client.grace"))
        for (flag, message) in [
            (["--ingest.max-label-bytes=0"], "--ingest.max-label-bytes must be 1...1125899906842624, not 0"),
            (
                ["--ingest.max-series-per-uid=-1"],
                "--ingest.max-series-per-uid must be 0...1000000000 (0 sets no cap), not -1"
            ),
            // "Unlimited" spelled as the largest number would overflow the registry's arithmetic.
            (
                ["--ingest.max-series-per-client=9223372036854775807"],
                "--ingest.max-series-per-client must be 1...1000000000"
            ),
            // An unset variable must not turn the uid check off.
            (["--ingest.allowed-uids", ""], "--ingest.allowed-uids: '' is not a uid or gid number"),
            (["--web.telemetry-path", "/-/healthy"], "--web.telemetry-path must be a path of its own"),
            (["--web.telemetry-path", ""], "--web.telemetry-path must be a path of its own like /metrics, not empty"),
            // Parsed with the other flags, before any socket is bound (it was a run-time "Cannot start").
            (["--web.listen-address", "127.0.0.1"], "Error: --web.listen-address: "),
            // Below a second a check only burns CPU (40 % of a core at 1ns).
            (
                ["--web.config.check-interval", "1ms"],
                "--web.config.check-interval must be 0 (off) or a duration of at least 100ms"
            ),
        ] {
            let refused = try runProcess(builtExecutable("taskwatchd"), flag)
            #expect(refused.status == 64, "\(flag)")
            #expect(refused.errorOutput.contains(message), "\(refused.errorOutput)")
        }
        #expect(try daemon.value("taskwatch_clients") == 0)
    }
}

/// Hostile input over the real socket: each is refused and counted, and the daemon keeps serving.
@Suite(.serialized) struct DaemonBadInputTests {
    let hello = Frame.hello(
        Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "victim", clientVersion: "t"))

    func rejected(_ daemon: DaemonProcess, _ reason: String) throws -> Double? {
        try daemon.value("taskwatch_messages_rejected_total{reason=\"\(reason)\"}")
    }

    func dropped(_ daemon: DaemonProcess, _ reason: String) throws -> Double? {
        try daemon.value("taskwatch_series_dropped_total{reason=\"\(reason)\"}")
    }

    @Test func everyKindOfBadFrameIsCountedWhileOthersKeepFlowing() throws {
        let daemon = try DaemonProcess(arguments: ["--ingest.max-series-per-client", "20"])
        // A well-behaved neighbour whose data must stay untouched.
        let neighbour = try SenderProcess(
            socket: daemon.socketPath,
            arguments: ["--process", "neighbour", "--task", "default=42", "--hold", "60s", "--interval", "20ms"])
        let neighbourSeries = "swift_tasks{process=\"neighbour\",pid=\"\(neighbour.pid)\",task=\"default\"}"
        #expect(try eventually { try daemon.value(neighbourSeries) == 42 })

        let client = try RawClient(path: daemon.socketPath)
        client.send(hello)
        let gauge = SeriesDeclaration(
            id: 1, type: .gauge, name: "swift_tasks", help: "Live.", labels: [Label("task", "a\"b\nc\\d")])
        let counter = SeriesDeclaration(
            id: 2, type: .counter, name: "swift_tasks_created_total", help: "Created.", labels: [Label("task", "x")])
        client.send(.declare([gauge, counter]))
        client.send(.values([ValueUpdate(id: 1, value: 5), ValueUpdate(id: 2, value: 100)]))
        let mine = "swift_tasks{process=\"victim\",pid=\"\(getpid())\",task=\"a\\\"b\\nc\\\\d\"}"
        #expect(try eventually { try daemon.value(mine) == 5 }, "\((try? daemon.metrics()) ?? "")")

        var generator = SystemRandomNumberGenerator()
        client.send((0..<40).map { _ in UInt8.random(in: 0...255, using: &generator) })  // random bytes
        client.send(Array(FrameEncoder.values([ValueUpdate(id: 1, value: 9)])[0].dropLast(4)))  // truncated
        client.send([UInt8](repeating: 0x54, count: 70_000))  // over 64 KiB
        client.send(.values([ValueUpdate(id: 99, value: 1)]))  // unknown id
        client.send(.values([ValueUpdate(id: 2, value: .nan)]))  // NaN counter
        client.send(.values([ValueUpdate(id: 2, value: -5)]))  // negative counter
        client.send(.values([ValueUpdate(id: 2, value: 50)]))  // decreasing counter
        var invalidUTF8 = FrameWriter(kind: .declare)
        invalidUTF8.append(UInt16(1))
        invalidUTF8.append(UInt32(3))
        invalidUTF8.append(SeriesType.gauge.rawValue)
        invalidUTF8.append(string: "app_bad")
        invalidUTF8.append(string: "")
        invalidUTF8.append(UInt16(1))
        invalidUTF8.append(string: "label")
        invalidUTF8.append(UInt16(2))
        client.send(invalidUTF8.bytes + [0xC3, 0x28, 0, 0])  // label value with invalid UTF-8
        client.send(.declare([SeriesDeclaration(id: 4, type: .histogram, name: "swift_tasks", help: "", bounds: [1])]))
        client.send(
            .declare(
                (0..<30).map {
                    SeriesDeclaration(
                        id: UInt32(100 + $0), type: .gauge, name: "app_many", help: "", labels: [Label("i", "\($0)")])
                }))

        let expectations: [(String, Double)] = [
            ("oversize", 1), ("unknown_series", 1), ("invalid_value", 2), ("counter_decrease", 1),
            ("invalid_utf8", 1),
        ]
        for (reason, count) in expectations {
            #expect(try eventually { try rejected(daemon, reason) == count }, "\(reason)")
        }
        let structural = try ["truncated", "bad_magic", "unsupported_version", "unknown_kind", "trailing_bytes"]
            .compactMap { try rejected(daemon, $0) }.reduce(0, +)
        #expect(structural >= 2, "random bytes and the truncated frame are both refused")
        #expect(try dropped(daemon, "conflict") == 1)
        #expect(try dropped(daemon, "client_limit") == 12)
        // Nothing bad touched good data, mine or the neighbour's.
        #expect(try daemon.value(mine) == 5)
        #expect(try daemon.value("swift_tasks_created_total{process=\"victim\",pid=\"\(getpid())\",task=\"x\"}") == 100)
        #expect(try daemon.value(neighbourSeries) == 42)
        try expectValidExposition(Data(try daemon.metrics().utf8))
        let openMetrics = try fetch(daemon.url("/metrics"), headers: ["Accept: application/openmetrics-text"])
        try expectValidExposition(openMetrics.body, openMetrics: true)
    }

    @Test func aClientThatOnlySendsGarbageIsDisconnectedAndCounted() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        client.send(hello)
        for _ in 0..<40 { client.send([0xDE, 0xAD, 0xBE, 0xEF]) }
        #expect(try eventually { try daemon.value("taskwatch_clients_rejected_total{reason=\"bad_frames\"}") == 1 })
        #expect(eventually { client.isClosedByPeer })
        #expect(try fetch(daemon.url("/-/healthy")).status == 200)
    }

    @Test func descriptorsPassedWithFramesAreNeverKept() throws {
        let daemon = try DaemonProcess()
        func openDescriptors() -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").count) ?? -1
        }
        let before = openDescriptors()
        let passed = (0..<16).map { _ in open("/dev/null", O_RDONLY | O_CLOEXEC) }
        defer { for fd in passed { close(fd) } }
        let client = try RawClient(path: daemon.socketPath)
        #expect(client.send(hello, passing: passed))
        let gauge = SeriesDeclaration(id: 1, type: .gauge, name: "passed_gauge", help: "A gauge.", labels: [])
        #expect(client.send(.declare([gauge]), passing: passed))
        // Many frames at once, so they are read many to a call, each with its descriptors.
        for value in 0..<200 {
            #expect(client.send(.values([ValueUpdate(id: 1, value: Double(value))]), passing: passed))
        }
        let series = "passed_gauge{process=\"victim\",pid=\"\(getpid())\"}"
        #expect(try eventually { try daemon.value(series) == 199 })
        // The frames were read as frames; the descriptors never became the daemon's. One more is open:
        // the connection. (Eventually: the scrape's HTTP connection may not be closed yet.)
        #expect(
            eventually { openDescriptors() == before + 1 }, "\(before) descriptors before, \(openDescriptors()) after")
        #expect(try daemon.value("taskwatch_messages_received_total") == 202)
        #expect(try daemon.value("taskwatch_clients_rejected_total{reason=\"bad_frames\"}") == 0)
    }

    @Test func clientsBeyondTheLimitAreRefused() throws {
        let daemon = try DaemonProcess(arguments: ["--ingest.max-clients", "2"])
        // Two connections of one process, under different names, are two clients.
        let first = try RawClient(path: daemon.socketPath)
        let second = try RawClient(path: daemon.socketPath)
        first.send(hello)
        second.send(
            .hello(Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "second", clientVersion: "t")))
        #expect(try eventually { try daemon.value("taskwatch_clients") == 2 })
        let third = try RawClient(path: daemon.socketPath)
        #expect(eventually { third.isClosedByPeer })
        #expect(try daemon.value("taskwatch_clients_rejected_total{reason=\"max_clients\"}") == 1)
    }

    /// Under a low open-file limit (the usual soft limit is 1,024, below the default client cap of
    /// 4,096), clients took every descriptor: connections past it were refused as
    /// `no_file_descriptors` and scrapes were not answered. The daemon raises the soft limit to the hard
    /// one, and lowers its caps to fit what is left (here 300: 118 clients, 118 HTTP connections).
    @Test func aLowOpenFileLimitLowersTheCapsAndLeavesRoomForScrapes() throws {
        let daemon = try DaemonProcess(openFileLimit: 300)
        #expect(daemon.log.contains("Connection caps lowered"), "\(daemon.log)")
        var clients: [RawClient] = []
        for _ in 0..<400 {
            if let client = try? RawClient(path: daemon.socketPath) { clients.append(client) }
        }
        #expect(
            try eventually { (try daemon.value("taskwatch_clients_rejected_total{reason=\"max_clients\"}") ?? 0) > 0 })
        #expect(try fetch(daemon.url("/metrics")).status == 200)
        #expect((try daemon.value("taskwatch_clients_rejected_total{reason=\"no_file_descriptors\"}") ?? 0) == 0)
        withExtendedLifetime(clients) {}
    }

    /// Every connection here comes from the test's own uid, as the kernel reports it.
    @Test func clientsOfOneUIDBeyondItsCapAreRefused() throws {
        let daemon = try DaemonProcess(arguments: ["--ingest.max-clients-per-uid", "1"])
        let first = try RawClient(path: daemon.socketPath)
        first.send(hello)
        #expect(try eventually { try daemon.value("taskwatch_clients") == 1 })
        let second = try RawClient(path: daemon.socketPath)
        #expect(eventually { second.isClosedByPeer })
        #expect(try daemon.value("taskwatch_clients_rejected_total{reason=\"uid_limit\"}") == 1)
        #expect(try daemon.value("taskwatch_clients_rejected_total{reason=\"max_clients\"}") == 0)
    }
}

/// The HTTP surface of the real daemon.
@Suite(.serialized) struct DaemonHTTPTests {
    @Test func endpointsMethodsAndFormats() throws {
        let daemon = try DaemonProcess()
        let sender = try SenderProcess(
            socket: daemon.socketPath, arguments: ["--process", "http", "--task", "default=3", "--hold", "30s"])
        #expect(
            try eventually {
                try daemon.value("swift_tasks{process=\"http\",pid=\"\(sender.pid)\",task=\"default\"}") == 3
            })

        let plain = try fetch(daemon.url("/metrics"))
        #expect(plain.status == 200)
        #expect(plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        try expectValidExposition(plain.body)

        let gzipped = try fetch(daemon.url("/metrics"), headers: ["Accept-Encoding: gzip"])
        #expect(gzipped.headers["content-encoding"] == "gzip")
        let inflated = try runProcess("gzip", ["-dc"], input: gzipped.body)
        #expect(inflated.status == 0)
        // Values such as CPU time move between scrapes; the series set must be the same.
        func names(_ text: String) -> [Substring] {
            text.split(separator: "\n").map { $0.split(separator: " ").first ?? "" }
        }
        #expect(names(inflated.outputText) == names(plain.text))

        let openMetrics = try fetch(daemon.url("/metrics"), headers: ["Accept: application/openmetrics-text"])
        #expect(openMetrics.headers["content-type"]?.hasPrefix("application/openmetrics-text") == true)
        #expect(openMetrics.text.hasSuffix("# EOF\n"))
        try expectValidExposition(openMetrics.body, openMetrics: true)

        #expect(try fetch(daemon.url("/metrics"), method: "POST").status == 405)
        #expect(try fetch(daemon.url("/nope")).status == 404)
        #expect(try fetch(daemon.url("/")).text.contains("/metrics"))
        #expect(try fetch(daemon.url("/-/healthy")).status == 200)
        #expect(try fetch(daemon.url("/-/ready")).status == 200)
        #expect(try fetch(daemon.url("/nope/again?x=1")).status == 404)

        // Every answer is counted by handler and code; unknown paths share one `other` series.
        for (series, count) in [
            (#"{handler="/metrics",code="405"}"#, 1.0), (#"{handler="other",code="404"}"#, 2),
            (#"{handler="/",code="200"}"#, 1), (#"{handler="/-/healthy",code="200"}"#, 1),
        ] {
            #expect(try daemon.value("taskwatch_http_requests_total" + series) == count, "\(series)")
        }
        // DaemonProcess itself polls readiness and scrapes, so these are at least the test's own.
        #expect(try daemon.value(#"taskwatch_http_requests_total{handler="/-/ready",code="200"}"#) ?? 0 >= 1)
        #expect(try daemon.value(#"taskwatch_http_requests_total{handler="/metrics",code="200"}"#) ?? 0 >= 3)

        // A request libmicrohttpd refuses on its own never reaches the request counter; its connection
        // shows as closed unanswered.
        let malformed = try rawExchange(port: daemon.port, Array("NOT HTTP\r\n\r\n".utf8))
        #expect(String(decoding: malformed.prefix(12), as: UTF8.self) == "HTTP/1.1 400")
        #expect(
            eventually { (try? daemon.value(#"taskwatch_http_connections_closed_total{answered="false"}"#)) == 1 })
        // Within one scrape the counters agree: every connection so far is closed, one unanswered, except
        // the scrape's own. The previous scrape's close may not be processed yet, so this is polled; a
        // connection counted twice or never would keep it from ever holding.
        var last = ""
        let agreed = eventually {
            let samples = daemon.samples()
            func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
                samples.first { $0.matches(name, labels) }?.value ?? -1
            }
            let accepted = value("taskwatch_http_connections_accepted_total")
            let answered = value("taskwatch_http_connections_closed_total", ["answered": "true"])
            let unanswered = value("taskwatch_http_connections_closed_total", ["answered": "false"])
            let requests = samples.filter { $0.matches("taskwatch_http_requests_total", [:]) }.reduce(0) {
                $0 + $1.value
            }
            last = "\(accepted) accepted, \(answered) answered, \(unanswered) not, \(requests) requests"
            // Each fetch above was a connection of its own, answered once or more.
            return accepted == answered + unanswered + 1 && unanswered == 1 && answered >= 10 && answered <= requests
        }
        #expect(agreed, "\(last)")
    }

    @Test func headOnMetricsAnswersWithTheGetHeadersAndNoBody() throws {
        let daemon = try DaemonProcess()
        let text = "text/plain; version=0.0.4; charset=utf-8"
        let openMetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        let cases: [(request: [String], type: String, encoding: String?)] = [
            ([], text, nil), (["Accept-Encoding: gzip"], text, "gzip"),
            (["Accept: application/openmetrics-text; version=1.0.0", "Accept-Encoding: gzip"], openMetrics, "gzip"),
        ]
        for (request, type, encoding) in cases {
            let head = try fetch(daemon.url("/metrics"), method: "HEAD", headers: request)
            let get = try fetch(daemon.url("/metrics"), headers: request)
            #expect(head.status == 200 && get.status == 200)
            #expect(head.headers["content-type"] == type && get.headers["content-type"] == type)
            #expect(head.headers["content-encoding"] == encoding && get.headers["content-encoding"] == encoding)
            #expect(head.headers["vary"] == get.headers["vary"])
            // Not rendered, so its length is unknown: none is claimed rather than a wrong one.
            #expect(head.headers["content-length"] == nil)
            #expect(get.headers["content-length"] == String(get.body.count))
            // curl -I prints the headers as its output; no metric line may follow them.
            #expect(!head.text.contains("taskwatch_build_info"))
        }
        let plain = try fetch(daemon.url("/metrics"))
        #expect(plain.text.contains("taskwatch_build_info"))
        try expectValidExposition(plain.body)
    }

    @Test func daemonExposesItsAddressSpaceLimit() throws {
        let daemon = try DaemonProcess()
        // The daemon inherits this process's limit.
        var limit = rlimit()
        #expect(getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0)
        let family =
            "# HELP process_virtual_memory_max_bytes Maximum amount of virtual memory available in bytes.\n"
            + "# TYPE process_virtual_memory_max_bytes gauge\nprocess_virtual_memory_max_bytes "
        let text = try daemon.metrics()
        #expect(text.contains(family))
        #expect(try daemon.value("process_virtual_memory_max_bytes") == Double(limit.rlim_cur))
        if limit.rlim_cur == rlim_t.max {
            // client_golang writes an unlimited address space (RLIM_INFINITY, the largest uint64) this way.
            #expect(text.contains(family + "1.8446744073709552e+19\n"))
        }

        // Changed while the daemon runs, the limit shows at the next scrape: it is read per scrape. A
        // soft limit up to the hard one is always allowed; 1 TiB is far above what the daemon maps.
        let changed: UInt64 = limit.rlim_max == rlim_t.max ? 1 << 40 : UInt64(limit.rlim_max)
        let prlimit = try runProcess("prlimit", ["--pid", String(daemon.pid), "--as=\(changed):"])
        #expect(prlimit.status == 0, "\(prlimit.errorOutput)")
        #expect(try daemon.value("process_virtual_memory_max_bytes") == Double(changed))
        try expectValidExposition(try fetch(daemon.url("/metrics")).body)
        let openMetrics = try fetch(daemon.url("/metrics"), headers: ["Accept: application/openmetrics-text"])
        #expect(openMetrics.text.contains(family))
        let sample = openMetrics.text.split(separator: "\n").first { $0.hasPrefix("process_virtual_memory_max_bytes ") }
        #expect(sample.flatMap { Double($0.split(separator: " ")[1]) } == Double(changed))
        try expectValidExposition(openMetrics.body, openMetrics: true)
    }

    @Test func concurrentScrapesAllSucceed() throws {
        let daemon = try DaemonProcess()
        // Sixteen curl processes at once; curl's own parallel mode keeps them in flight together.
        let urls = (0..<16).flatMap { _ in ["-o", "/dev/null", "-w", "%{http_code}\\n", daemon.url("/metrics")] }
        let result = try runProcess("curl", ["-s", "--parallel", "--parallel-max", "16"] + urls)
        let codes = result.outputText.split(separator: "\n")
        #expect(codes.count == 16)
        #expect(codes.allSatisfy { $0 == "200" })
    }
}
