import Foundation
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatchCLI

/// The AGE column of `taskwatch top`, and the HTTP client's basic auth and TLS detection, without a
/// daemon.
@Suite struct CLITableAndHTTPTests {
    @Test func ageIsTheScrapeTimeLessTheLastReport() {
        let text = """
            swift_tasks{process="p",pid="7",task="t"} 3
            swift_tasks{process="p",pid="7",task="u"} 1
            taskwatch_client_up{process="p",pid="7"} 1
            taskwatch_client_up{process="q",pid="8"} 0
            taskwatch_client_up{process="r",pid="9"} 1
            taskwatch_client_up{process="s",pid="10"} 1
            taskwatch_client_last_report_timestamp_seconds{process="p",pid="7"} 1700000000.25
            taskwatch_client_last_report_timestamp_seconds{process="q",pid="8"} 1699999800
            taskwatch_client_last_report_timestamp_seconds{process="s",pid="10"} 1700000013
            """
        let current = MetricsSnapshot(
            nanoseconds: 1, unixSeconds: 1_700_000_012.5, samples: PrometheusText.parse(text))
        let rows = ClientTable.sorted(ClientTable.rows(previous: nil, current: current), by: .age)
        // Oldest first; a report stamped after the scrape's clock reading counts as 0; r never reported.
        #expect(rows.map(\.process) == ["q", "p", "p", "s", "r"])
        #expect(rows.map(\.age) == [212.5, 12.25, 12.25, 0, nil])
        let table = ClientTable.render(rows).split(separator: "\n")
        #expect(
            table.map { $0.split(separator: " ").last.map(String.init) } == ["AGE", "3m", "12s", "12s", "0.0s", "-"])
        #expect(table[0].split(separator: " ").map(String.init) == ClientTable.headers)

        // Without the scrape's Unix time there is no age to show.
        let unknown = MetricsSnapshot(nanoseconds: 1, samples: PrometheusText.parse(text))
        #expect(ClientTable.rows(previous: nil, current: unknown).allSatisfy { $0.age == nil })
    }

    @Test func twoConnectionsOfOneProcessShowTheNewerReport() {
        let text = """
            taskwatch_client_up{process="p",pid="7"} 1
            taskwatch_client_last_report_timestamp_seconds{process="p",pid="7"} 90
            taskwatch_client_last_report_timestamp_seconds{process="p",pid="7"} 99
            """
        let rows = ClientTable.rows(
            previous: nil,
            current: MetricsSnapshot(nanoseconds: 1, unixSeconds: 100, samples: PrometheusText.parse(text)))
        #expect(rows.map(\.age) == [1])
    }

    @Test(arguments: [
        (0.0, "0.0s"), (0.04, "0.0s"), (0.96, "0.9s"), (9.99, "9.9s"), (10, "10s"), (59.9, "59s"), (60, "1m"),
        (239, "3m"), (7_200, "2h"), (90_000, "1d"), (-3, "0.0s"), (.nan, "?"), (.infinity, "?"),
    ])
    func ageFormat(seconds: Double, text: String) {
        #expect(Format.age(seconds) == text)
    }

    @Test func basicAuthorizationIsBase64OfUserColonPassword() {
        // RFC 4648 section 10 and RFC 7617 section 2.
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE="]
        for (plain, encoded) in vectors { #expect(HTTPClient.base64(Array(plain.utf8)) == encoded, "\(plain)") }
        #expect(HTTPClient.base64(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(
            HTTPClient.basicAuthorization(user: "Aladdin", password: "open sesame")
                == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        #expect(HTTPClient.basicAuthorization(user: "ü", password: "") == "Basic w7w6")
    }

    @Test func aTLSAlertInReplyToPlainHTTPSaysTheEndpointSpeaksTLS() {
        // An alert record: type 21, version 3.3, length 2, fatal (2) protocol_version (70).
        let error = #expect(throws: HTTPError.self) { try HTTPClient.parse([21, 3, 3, 0, 2, 2, 70], from: "h:1") }
        #expect(error?.description == "h:1: \(HTTPClient.needsPlainHTTP)")
        #expect(
            HTTPClient.needsPlainHTTP.hasPrefix(
                "the endpoint speaks TLS; the taskwatch CLI needs a plain-HTTP listener"))
        #expect(HTTPClient.isTLSRecord(Array(HTTPClient.clientHello.prefix(2))))
        #expect(!HTTPClient.isTLSRecord(Array("HTTP/1.1 200 OK".utf8)))
        let ok = try? HTTPClient.parse(Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".utf8), from: "h:1")
        #expect(ok?.status == 200 && ok?.text == "hi")
    }

    /// Whatever answers on the address is read, daemon or not: a negative Content-Length or chunk size,
    /// or one so large that adding it overflowed, trapped `top` and `check` instead of failing the read.
    @Test(arguments: [
        ("Content-Length: -1\r\n\r\nabc", "sent a bad Content-Length: -1"),
        ("Content-Length: 1x\r\n\r\nabc", "sent a bad Content-Length: 1x"),
        ("Transfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n", "sent a bad chunk size"),
        ("Transfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc\r\n0\r\n\r\n", "cut a chunk short"),
    ])
    func aBadLengthFromTheServerIsAnErrorNotATrap(headersAndBody: String, message: String) {
        let answer = Array(("HTTP/1.1 200 OK\r\n" + headersAndBody).utf8)
        let error = #expect(throws: HTTPError.self) { try HTTPClient.parse(answer, from: "h:1") }
        #expect(error?.description == "h:1 \(message)")
        let padded = try? HTTPClient.parse(Array("HTTP/1.1 200 OK\r\nContent-Length: 2 \r\n\r\nhi!".utf8), from: "h:1")
        #expect(padded?.text == "hi")
    }
}

/// `top` and `check` against a daemon with a custom telemetry path or basic auth.
@Suite(.serialized) struct CLIEndpointTests {
    static let notFound = "answered 404 (is --path the daemon's --web.telemetry-path?)"

    @Test func checkAndTopReadTheMetricsPathGivenByPath() throws {
        let daemon = try DaemonProcess(arguments: ["--web.telemetry-path", "/m"])
        let address = "127.0.0.1:\(daemon.port)"
        let check = ["check", "--socket", daemon.socketPath, "--address", address]
        let custom = try runProcess(taskwatchBinary, check + ["--path", "/m"])
        #expect(custom.status == 0, "\(custom.outputText)")
        #expect(custom.outputText.contains("ok    taskwatchd version "), "\(custom.outputText)")
        let standard = try runProcess(taskwatchBinary, check)
        #expect(standard.status == 3, "\(standard.outputText)")
        #expect(
            standard.outputText.contains("FAIL  GET /metrics on \(address) \(Self.notFound)\n"),
            "\(standard.outputText)")

        let top = ["top", "--address", address, "--once", "--interval", "100ms"]
        let customTop = try runProcess(taskwatchBinary, top + ["--path", "/m"])
        #expect(customTop.status == 0, "\(customTop.errorOutput)")
        #expect(customTop.outputText.split(separator: "\n").dropFirst().first?.hasPrefix("PROCESS") == true)
        let standardTop = try runProcess(taskwatchBinary, top)
        #expect(standardTop.status == 1)
        #expect(standardTop.errorOutput == "taskwatch top: GET /metrics on \(address) \(Self.notFound)\n")
    }

    @Test func checkAndTopSendBasicAuthWithThePasswordFromTheEnvironment() throws {
        let directory = ScratchDirectory()
        // bcrypt, cost 4, of "s3cret".
        let hash = "$2b$04$Vm8jI1LuafxuE9LJWP2kcekhZiRKL./BloAN8SJnMu3.XzWghqRYq"
        try directory.write("web.yml", "basic_auth_users:\n  alice: \(hash)\n")
        let port = try freePort()
        let address = "127.0.0.1:\(port)"
        let socket = directory.file("ingest.sock")
        let daemon = try ChildProcess(
            builtExecutable("taskwatchd"),
            [
                "--web.config.file", directory.file("web.yml"), "--web.listen-address", address,
                "--ingest.socket", socket,
            ], errors: directory.file("daemon.log"))
        #expect(eventually { daemon.log.contains("Listening") }, "\(daemon.log)")

        // Through env(1), since runProcess passes the test's own environment.
        func run(_ environment: [String], _ arguments: [String]) throws -> ProcessResult {
            try runProcess(
                "/usr/bin/env", ["-u", basicAuthPasswordVariable] + environment + [taskwatchBinary] + arguments)
        }
        let check = ["check", "--socket", socket, "--address", address]
        let alice = ["--basic-auth-user", "alice"]
        let good = try run(["TASKWATCH_BASIC_AUTH_PASSWORD=s3cret"], check + alice)
        #expect(good.status == 0, "\(good.outputText)")
        #expect(good.outputText.contains("ok    taskwatchd version "), "\(good.outputText)")
        let top = try run(["TASKWATCH_BASIC_AUTH_PASSWORD=s3cret"], ["top", "--address", address, "--once"] + alice)
        #expect(top.status == 0, "\(top.errorOutput)")

        let refused =
            "FAIL  daemon at \(address) is not ready: /-/ready answered 401 (give --basic-auth-user, with the "
            + "password in $TASKWATCH_BASIC_AUTH_PASSWORD)\n"
        let anonymous = try run([], check)
        #expect(anonymous.status == 2 && anonymous.outputText.contains(refused), "\(anonymous.outputText)")
        // Credentials sent and refused are wrong, not missing: the hint said to give --basic-auth-user.
        let wrong = try run(["TASKWATCH_BASIC_AUTH_PASSWORD=s3creT"], check + alice)
        let wrongPassword =
            "FAIL  daemon at \(address) is not ready: /-/ready answered 401 (the daemon refused the user and "
            + "password: check --basic-auth-user and $TASKWATCH_BASIC_AUTH_PASSWORD)\n"
        #expect(wrong.status == 2 && wrong.outputText.contains(wrongPassword), "\(wrong.outputText)")
        let topOnce = ["top", "--address", address, "--once", "--interval", "10ms"]
        let wrongTop = try run(["TASKWATCH_BASIC_AUTH_PASSWORD=s3creT"], topOnce + alice)
        #expect(wrongTop.status == 1 && wrongTop.errorOutput.contains("401 (the daemon refused the user and password"))
        let unset = try run([], check + alice)
        #expect(unset.status == 64)
        #expect(
            unset.errorOutput.hasPrefix(
                "Error: --basic-auth-user needs the password in TASKWATCH_BASIC_AUTH_PASSWORD\n"),
            "\(unset.errorOutput)")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }
}

/// Error messages and exit statuses of the built binary: 64 for usage errors with the subcommand's
/// usage, 1 for failures at run time.
@Suite struct CLIErrorTests {
    @Test func sendNamesTheSocketItCannotReachAndExits1() throws {
        let directory = ScratchDirectory()
        let path = directory.file("absent.sock")
        let result = try runProcess(taskwatchBinary, ["send", "--socket", path])
        #expect(result.status == 1)
        #expect(result.errorOutput == "taskwatch send: cannot connect to \(path): No such file or directory\n")
        #expect(result.output.isEmpty)
    }

    @Test func sendWithAHoldSaysAtOnceThatItCannotConnectAndKeepsTrying() throws {
        let directory = ScratchDirectory()
        let path = directory.file("absent.sock")
        let result = try runProcess(
            taskwatchBinary, ["send", "--socket", path, "--hold", "500ms", "--interval", "100ms"])
        #expect(result.status == 1)
        #expect(
            result.errorOutput
                == "taskwatch send: cannot connect to \(path): No such file or directory; retrying until --hold ends\n"
                + "taskwatch send: cannot connect to \(path): No such file or directory\n")
    }

    @Test(arguments: [
        (["send", "--task", "foo"], "bad --task: foo (expected NAME=LIVE, e.g. requests=3)"),
        (["send", "--hold", "soon"], "The value 'soon' is invalid for '--hold <hold>'"),
        (["send", "--interval", "0"], "--interval must be above 0"),
        (["stress", "--tasks", "-1"], "--tasks must not be negative"),
        (["stress", "--tasks=-1"], "--tasks must not be negative"),
        (["stress", "--rate", "-5"], "--rate must be from 0 to 10000000 jobs a second"),
        (["stress", "--concurrency", "-2"], "--concurrency must be at least 1"),
        // Ignored without a word: the comparison runs spawn and pool.
        (["stress", "--compare", "--mode", "group"], "--mode group cannot go with --compare (it runs spawn and pool)"),
        (["stress", "--hold", "1x"], "The value '1x' is invalid for '--hold <hold>'"),
        // A negative duration or pid read as an option: "Missing value for '--hold <hold>'".
        (["stress", "--hold", "-1s"], "The value '-1s' is invalid for '--hold <hold>'"),
        (["top", "--interval", "-2s"], "The value '-2s' is invalid for '--interval <interval>'"),
        (["send", "--claim-pid", "-1"], "The value '-1' is invalid for '--claim-pid <claim-pid>'"),
        (["leak", "stream", "--rate", "-1"], "--rate must be from 0.001 to 100000"),
        // It crashed: 1e9 / rate nanoseconds did not fit a UInt64.
        (["leak", "stream", "--rate", "1e-11"], "--rate must be from 0.001 to 100000"),
        (["leak", "stream", "--socket", ""], "--socket must not be empty"),
        (["stress", "--process", ""], "--process must not be empty"),
        (["check", "--socket", ""], "--socket must not be empty"),
        // Values the daemon would refuse without a word to the sender.
        (["send", "--task", "a=nan"], "--task a: the live count must be finite"),
        (["send", "--created", "-5"], "--created must be 0 or more (a counter)"),
        (["send", "--grow", "-1"], "--grow must be 0 or more: it is added to a counter, which may not go down"),
        (["send", "--process", ""], "--process must be 1 to 4096 bytes"),
        (["send", "--process", String(repeating: "p", count: 4_097)], "--process must be 1 to 4096 bytes"),
        (["leak", "stream", "--duration", "later"], "The value 'later' is invalid for '--duration <duration>'"),
        (["top", "--interval", "0"], "--interval must be above 0"),
        (["top", "--limit", "-1"], "--limit must not be negative"),
        (["check", "--path", "metrics"], "--path must begin with /: metrics"),
        // Port 99999 was taken modulo 65536: top read whatever listened on 34463, under 99999's name.
        (["top", "--address", "127.0.0.1:99999"], "--address must end in a port from 1 to 65535: 127.0.0.1:99999"),
        (["check", "--address", "localhost:0"], "--address must end in a port from 1 to 65535: localhost:0"),
        (["top", "--address", "localhost:-1"], "--address must end in a port from 1 to 65535: localhost:-1"),
        (["check", "--timeout", "0"], "--timeout must be at least 1 (milliseconds)"),
    ])
    func usageErrorsExit64WithTheSubcommandsUsage(arguments: [String], message: String) throws {
        let result = try runProcess(taskwatchBinary, arguments)
        #expect(result.status == 64)
        #expect(result.errorOutput.hasPrefix("Error: \(message)\n"), "\(result.errorOutput)")
        #expect(result.errorOutput.contains("\nUsage: taskwatch \(arguments[0]) "), "\(result.errorOutput)")
        #expect(result.output.isEmpty)
    }

    /// A directory or a file given as the socket (a mistake, such as the socket's directory) was said to
    /// be one nobody listens on, or to refuse connections.
    @Test func aSocketPathThatIsADirectoryOrAFileIsNamedAsSuch() throws {
        let directory = ScratchDirectory()
        let file = directory.file("file")
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        for (path, kind) in [(directory.path, "a directory"), (file, "a regular file")] {
            let send = try runProcess(taskwatchBinary, ["send", "--socket", path])
            #expect(send.status == 1)
            #expect(send.errorOutput == "taskwatch send: cannot connect to \(path): it is \(kind), not a socket\n")
            let warning = "taskwatch: cannot connect to \(path): it is \(kind), not a socket; reports are dropped\n"
            let stress = try runProcess(
                taskwatchBinary, ["stress", "--tasks", "1", "--hold", "0", "--quiet", "--socket", path])
            #expect(stress.status == 0 && stress.errorOutput == warning, "\(stress.errorOutput)")
            let leak = try runProcess(taskwatchBinary, ["leak", "stream", "--duration", "10ms", "--socket", path])
            #expect(leak.status == 0 && leak.errorOutput == warning, "\(leak.errorOutput)")
            let check = try runProcess(
                taskwatchBinary, ["check", "--socket", path, "--address", "127.0.0.1:\(try freePort())"])
            #expect(check.status == 1)
            #expect(check.outputText.hasPrefix("FAIL  ingest socket \(path) is \(kind), not a socket\n"))
        }
    }

    /// A write to standard output that fails (here ENOSPC, into /dev/full) ends the command with a
    /// message and EX_IOERR: `stress` printed its report into nothing and exited 0, `leak` ran on with
    /// every line lost, and `check` gave the status of its findings, none of which was shown.
    @Test func aFailedWriteToStandardOutputEndsTheCommand() throws {
        let directory = ScratchDirectory()
        let socket = directory.file("absent.sock")
        let port = try freePort()
        let message = "taskwatch: cannot write to standard output: No space left on device\n"
        for arguments in [
            ["stress", "--tasks", "10", "--hold", "1ms", "--quiet", "--socket", socket],
            ["stress", "--compare", "--tasks", "10", "--hold", "1ms", "--quiet", "--socket", socket],
            ["leak", "stream", "--duration", "20s", "--socket", socket],
            ["check", "--socket", socket, "--address", "127.0.0.1:\(port)"],
        ] {
            let run = try ChildProcess(
                taskwatchBinary, arguments, output: "/dev/full",
                errors: directory.file("err-\(UInt32.random(in: 0...UInt32.max))"))
            let status = run.waitForExit(timeout: .seconds(10))
            if status == nil { run.signal(SIGKILL) }
            #expect(status == 74, "\(arguments): \(String(describing: status)) \(run.log)")
            #expect(run.log.hasSuffix(message), "\(arguments): \(run.log)")
        }
    }

    @Test func leakAndStressWarnOnceWhenNothingListens() throws {
        let directory = ScratchDirectory()
        let path = directory.file("absent.sock")
        let warning = "taskwatch: nothing listens on \(path); reports are dropped until a daemon starts\n"
        let stress = ["stress", "--tasks", "20", "--hold", "1ms", "--quiet", "--socket"]
        let alone = try runProcess(taskwatchBinary, stress + [path])
        #expect(alone.status == 0 && alone.errorOutput == warning, "\(alone.errorOutput)")
        // Once for the comparison, not again in each of its two child runs.
        let compare = try runProcess(taskwatchBinary, stress + [path, "--compare"])
        #expect(compare.status == 0 && compare.errorOutput == warning, "\(compare.errorOutput)")
        let leak = try runProcess(taskwatchBinary, ["leak", "stream", "--duration", "200ms", "--socket", path])
        #expect(leak.status == 0 && leak.errorOutput == warning, "\(leak.errorOutput)")

        let daemon = try DaemonProcess()
        let listened = try runProcess(taskwatchBinary, stress + [daemon.socketPath])
        #expect(listened.status == 0 && listened.errorOutput.isEmpty, "\(listened.errorOutput)")
    }

    /// The kernel completes a connect before the daemon accepts it, so a daemon that refuses this user
    /// (here: its uid is not allowed) looked like a working one: `send` and `check` said so and exited
    /// 0, and `stress` and `leak` warned of nothing while every report was dropped.
    @Test func aDaemonThatRefusesThisUserIsReportedAsRefusing() throws {
        let other = getuid() == 4_242 ? "4243" : "4242"
        let daemon = try DaemonProcess(arguments: ["--ingest.allowed-uids", other])
        let refusal = "closed the connection at once: it refuses this process (uid \(getuid()))"
        let send = try runProcess(taskwatchBinary, ["send", "--socket", daemon.socketPath])
        #expect(send.status == 1 && send.errorOutput.contains(refusal), "\(send.errorOutput)")
        let check = try runProcess(
            taskwatchBinary, ["check", "--socket", daemon.socketPath, "--address", "127.0.0.1:\(daemon.port)"])
        #expect(check.status == 1, "\(check.outputText)")
        #expect(
            check.outputText.contains("FAIL  ingest socket \(daemon.socketPath): taskwatchd at"), "\(check.outputText)")
        #expect(check.outputText.contains(refusal), "\(check.outputText)")
        let stress = try runProcess(
            taskwatchBinary, ["stress", "--tasks", "20", "--hold", "1ms", "--quiet", "--socket", daemon.socketPath])
        #expect(stress.status == 0 && stress.errorOutput.contains(refusal), "\(stress.errorOutput)")
        let leak = try runProcess(
            taskwatchBinary, ["leak", "stream", "--duration", "200ms", "--socket", daemon.socketPath])
        #expect(leak.status == 0 && leak.errorOutput.contains(refusal), "\(leak.errorOutput)")
    }

    /// The daemon refuses at accept for more than its allowed lists and overall cap: past
    /// `--ingest.max-clients-per-uid` (here held by a connection of this test's own uid) and, for a peer
    /// outside its pid namespace, as `unknown_pid` (IngestAccessTests runs that one). The advice named
    /// neither, so a user at the per-uid cap was pointed at flags that were not the cause.
    @Test func theRefusalAdviceNamesThePerUIDCapAndThePidNamespace() throws {
        let daemon = try DaemonProcess(arguments: ["--ingest.max-clients-per-uid", "1"])
        let holder = try RawClient(path: daemon.socketPath)
        holder.send(
            .hello(Hello(claimedPID: 0, intervalNanoseconds: 10_000_000, process: "holder", clientVersion: "t")))
        #expect(try eventually { try daemon.value("taskwatch_clients") == 1 })
        let send = try runProcess(taskwatchBinary, ["send", "--socket", daemon.socketPath])
        #expect(send.status == 1, "\(send.errorOutput)")
        #expect(send.errorOutput.contains("closed the connection at once"), "\(send.errorOutput)")
        #expect(send.errorOutput.contains("--ingest.max-clients-per-uid is reached"), "\(send.errorOutput)")
        #expect(send.errorOutput.contains("outside the daemon's pid namespace"), "\(send.errorOutput)")
        #expect(send.errorOutput.contains("\"Ingest client rejected\""), "\(send.errorOutput)")
        #expect((try daemon.value("taskwatch_clients_rejected_total{reason=\"uid_limit\"}") ?? 0) >= 1)
        #expect(try daemon.value("taskwatch_clients_rejected_total{reason=\"max_clients\"}") == 0)
        withExtendedLifetime(holder) {}
    }

    @Test func helpShowsDefaultsAndHowTheSocketPathIsChosen() throws {
        func help(_ subcommand: String) throws -> String {
            let result = try runProcess(taskwatchBinary, [subcommand, "--help"])
            // Words only: where ArgumentParser wraps the lines depends on the terminal width.
            return result.outputText.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        let top = try help("top")
        #expect(top.contains("--interval <interval> Refresh interval, e.g. 500ms or 2s. (default: 2s)"), "\(top)")
        #expect(top.contains("--path <path> The metrics path: the daemon's --web.telemetry-path. (default: /metrics)"))
        #expect(top.contains("$TASKWATCH_BASIC_AUTH_PASSWORD"))
        let stress = try help("stress")
        #expect(stress.contains("--hold <hold> How long each job stays suspended, e.g. 1s. (default: 1s)"), "\(stress)")
        #expect(!stress.contains("socket-checked"))
        let socket =
            "--socket <path> Ingest socket path (default: $TASKWATCH_SOCKET, else /run/taskwatch/ingest.sock for "
            + "root, else $XDG_RUNTIME_DIR/taskwatch/ingest.sock, else /tmp/taskwatch-$UID/ingest.sock)."
        for subcommand in ["stress", "leak", "check", "send"] {
            #expect(try help(subcommand).contains(socket), "\(subcommand)")
        }
    }
}
