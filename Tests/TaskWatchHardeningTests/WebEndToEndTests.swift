import Foundation
import Glibc
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

/// The real `taskwatchd` behind TLS and basic auth, spoken to with curl.
@Suite(.serialized) struct WebEndToEndTests {
    @Test func httpsWithBasicAuthAndLiveReload() throws {
        let directory = ScratchDirectory()
        try makeCertificate(in: directory)
        try directory.write(
            "web.yml",
            """
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
              min_version: TLS12
            basic_auth_users:
              alice: \(try quickHash("first-secret"))
            """)
        let (daemon, port) = try startDaemon(in: directory)
        let url = "https://127.0.0.1:\(port)/metrics"
        let tls = ["--cacert", directory.file("server.crt")]

        let anonymous = try curl(url, tls)
        #expect(anonymous.status == 401)
        #expect(anonymous.headers.contains("WWW-Authenticate: Basic realm=\"taskwatchd\""))
        #expect(anonymous.body == "Unauthorized\n")
        #expect(!anonymous.body.contains("taskwatch_") && !anonymous.body.contains("swift_"))

        let wrong = try curl(url, tls + ["-u", "alice:wrong"])
        #expect(wrong.status == 401)
        #expect(!wrong.body.contains("taskwatch_"))
        let unknownUser = try curl(url, tls + ["-u", "mallory:first-secret"])
        #expect(unknownUser.status == 401)
        // Every path is behind the same door, so a stranger cannot even map the endpoints.
        #expect(try curl("https://127.0.0.1:\(port)/", tls).status == 401)
        #expect(try curl("https://127.0.0.1:\(port)/nope", tls).status == 401)

        let right = try curl(url, tls + ["-u", "alice:first-secret"])
        #expect(right.status == 200)
        #expect(right.body.contains("taskwatch_build_info"))
        // Each refusal is counted by path, and a path the daemon does not serve counts as `other`.
        let counted = try curl(url, tls + ["-u", "alice:first-secret"]).body
        for series in [
            #"{handler="/metrics",code="401"} 3"#, #"{handler="/",code="401"} 1"#,
            #"{handler="other",code="401"} 1"#, #"{handler="/metrics",code="200"} 1"#,
        ] {
            #expect(counted.contains("taskwatch_http_requests_total\(series)\n"), "\(series)")
        }

        // Plain HTTP on the TLS port gets no metrics either.
        let plain = try runProcess("/usr/bin/curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"])
        #expect(!plain.outputText.contains("taskwatch_"))
        // TLS 1.1 is below min_version.
        let old = try runProcess(
            "/usr/bin/curl",
            ["-sS", "--max-time", "5", "--tlsv1.1", "--tls-max", "1.1", "-u", "alice:first-secret"] + tls + [url])
        #expect(old.status != 0)
        #expect(!old.outputText.contains("taskwatch_"))

        let newConfig = try String(contentsOfFile: directory.file("web.yml"), encoding: .utf8)
            .replacingOccurrences(of: "alice:", with: "alice: \(try quickHash("second-secret"))\n  old_alice:")
        try directory.write("web.yml", newConfig)
        daemon.signal(SIGHUP)
        #expect(eventually(timeout: .seconds(15)) { daemon.log.contains("Web config reloaded") })
        #expect(try curl(url, tls + ["-u", "alice:first-secret"]).status == 401)
        #expect(try curl(url, tls + ["-u", "alice:second-secret"]).status == 200)

        // A broken file on reload is logged and the users in force stay.
        try directory.write("web.yml", "basic_auth_users: [broken\n")
        daemon.signal(SIGHUP)
        #expect(eventually(timeout: .seconds(15)) { daemon.log.contains("Web config reload failed") })
        #expect(try curl(url, tls + ["-u", "alice:second-secret"]).status == 200)
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test func renewedCertificateIsServedAfterSIGHUPWithoutRefusingAConnection() throws {
        let directory = ScratchDirectory()
        let (daemon, port) = try startTLSDaemon(in: directory)
        let url = "https://127.0.0.1:\(port)/-/healthy"
        #expect(try verifies(url, against: directory.file("server.crt")))
        func reloadSeries() throws -> String {
            let body = try curl("https://127.0.0.1:\(port)/metrics", ["-k"]).body
            return body.split(separator: "\n").filter { $0.hasPrefix("taskwatch_web_config_last_reload_successful ") }
                .joined()
        }
        #expect(try reloadSeries() == "taskwatch_web_config_last_reload_successful 1")
        let old = try String(contentsOfFile: directory.file("server.crt"), encoding: .utf8)
        try directory.write("old.crt", old)

        // Renewed in place, as cert-manager or certbot do, while a client keeps connecting.
        try makeCertificate(in: directory)
        let done = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
        let client = Thread {
            while !done.load(ordering: .acquiring) {
                guard
                    let result = try? runProcess(
                        "/usr/bin/curl", ["-sS", "-k", "--max-time", "10", "-o", "/dev/null", url])
                else { continue }
                if result.status != 0 { failures.withLock { $0.append(result.errorOutput) } }
            }
        }
        client.start()
        usleep(100_000)
        daemon.signal(SIGHUP)
        #expect(eventually(timeout: .seconds(15)) { daemon.log.contains("tls=replaced") }, "\(daemon.log)")
        usleep(100_000)
        done.store(true, ordering: .releasing)
        while !client.isFinished { usleep(5_000) }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        #expect(try verifies(url, against: directory.file("server.crt")))
        #expect(try !verifies(url, against: directory.file("old.crt")))

        // A key that does not fit the certificate: the reload fails and the renewed pair stays.
        let other = ScratchDirectory()
        try makeCertificate(in: other)
        try directory.write(
            "web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: \(other.file("server.key"))\n")
        daemon.signal(SIGHUP)
        #expect(eventually(timeout: .seconds(15)) { daemon.log.contains("cannot serve TLS") }, "\(daemon.log)")
        #expect(try verifies(url, against: directory.file("server.crt")))
        #expect(try reloadSeries() == "taskwatch_web_config_last_reload_successful 0")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test func renewedCertificateIsPickedUpByTheCheckWithoutASignal() throws {
        let directory = ScratchDirectory()
        let (daemon, port) = try startTLSDaemon(
            in: directory, extraArguments: ["--web.config.check-interval", "200ms"])
        let url = "https://127.0.0.1:\(port)/-/healthy"
        #expect(try verifies(url, against: directory.file("server.crt")))
        // cert-manager and certbot replace the files and tell no one.
        try makeCertificate(in: directory)
        #expect(
            eventually(timeout: .seconds(15)) { daemon.log.contains("trigger=\"file changed\"") }, "\(daemon.log)")
        #expect(try verifies(url, against: directory.file("server.crt")))
        // Unchanged files are not reloaded again: exactly one reload in the log.
        usleep(600_000)
        #expect(daemon.log.components(separatedBy: "Web config reloaded").count == 2, "\(daemon.log)")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test func mutualTLSAdmitsOnlyClientsWithATrustedCertificate() throws {
        let directory = ScratchDirectory()
        let authority = try TestCertificates(in: directory)
        try authority.issue("server", subjectAltName: "IP:127.0.0.1", extendedKeyUsage: "serverAuth")
        try authority.issue("prometheus", subjectAltName: "DNS:prometheus.example", extendedKeyUsage: "clientAuth")
        try authority.selfSigned("stranger")
        try directory.write(
            "web.yml",
            """
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
              client_auth_type: RequireAndVerifyClientCert
              client_ca_file: ca.crt
              client_allowed_sans: [prometheus.example]
            """)
        let (daemon, port) = try startDaemon(in: directory)
        let url = "https://127.0.0.1:\(port)/metrics"
        func response(as client: String?) throws -> CurlResponse {
            let identity = client.map { ["--cert", directory.file("\($0).crt"), "--key", directory.file("\($0).key")] }
            return try curl(url, ["--cacert", directory.file("ca.crt")] + (identity ?? []))
        }
        let trusted = try response(as: "prometheus")
        #expect(trusted.status == 200)
        #expect(trusted.body.contains("taskwatch_build_info"))
        for client in [nil, "stranger"] {
            let refused = try response(as: client)
            #expect(refused.status == 403, "\(client ?? "no certificate")")
            #expect(!refused.body.contains("taskwatch_"))
        }
        // The handler never sees a refused client, but the server counts the answer.
        let counted = try response(as: "prometheus").body
        #expect(counted.contains(#"taskwatch_http_requests_total{handler="/metrics",code="403"} 2"#))
        #expect(counted.contains(#"taskwatch_http_requests_total{handler="/metrics",code="200"} 1"#))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test func configuredResponseHeadersAreSentAndFollowAReload() throws {
        let directory = ScratchDirectory()
        let headers = { (frame: String) in
            "http_server_config:\n  headers:\n    X-Frame-Options: \(frame)\n    X-Content-Type-Options: nosniff\n"
        }
        try directory.write("web.yml", headers("deny"))
        let (daemon, port) = try startDaemon(in: directory)
        for path in ["/metrics", "/nope"] {
            let response = try curl("http://127.0.0.1:\(port)\(path)")
            #expect(response.headers.contains("X-Frame-Options: deny"), "\(path): \(response.headers)")
            #expect(response.headers.contains("X-Content-Type-Options: nosniff"), "\(path): \(response.headers)")
        }
        try directory.write("web.yml", headers("sameorigin"))
        daemon.signal(SIGHUP)
        #expect(eventually(timeout: .seconds(15)) { daemon.log.contains("Web config reloaded") })
        #expect(try curl("http://127.0.0.1:\(port)/metrics").headers.contains("X-Frame-Options: sameorigin"))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test func rateLimitTurnsAwayRequestsBeforeBasicAuthAndCountsThem() throws {
        let directory = ScratchDirectory()
        try directory.write(
            "web.yml",
            "rate_limit:\n  interval: 3s\n  burst: 2\nbasic_auth_users:\n  alice: \(try quickHash("pw"))\n")
        let (daemon, port) = try startDaemon(in: directory)
        let url = "http://127.0.0.1:\(port)/metrics"
        // Three at once: the burst, then a 429, and a wrong password never reaches bcrypt.
        let statuses = try [["-u", "alice:pw"], ["-u", "alice:pw"], ["-u", "alice:wrong"]].map {
            try curl(url, $0)
        }
        #expect(statuses.map(\.status) == [200, 200, 429])
        let retryAfter = statuses[2].headers.split(separator: "\r\n").first { $0.hasPrefix("Retry-After: ") }
        #expect(retryAfter.map { (1...3).contains(Int($0.dropFirst(13)) ?? 0) } == true, "\(statuses[2].headers)")
        #expect(statuses[2].body == "Too Many Requests\n")
        // Three requests take far less than the 3 s a token needs to come back, even on a loaded machine.
        usleep(3_200_000)
        let metrics = try curl(url, ["-u", "alice:pw"])
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("taskwatch_web_requests_limited_total 1\n"), "\(metrics.body.suffix(600))")
        #expect(metrics.body.contains(#"taskwatch_http_requests_total{handler="/metrics",code="429"} 1"#))
        #expect(metrics.body.contains(#"taskwatch_http_requests_total{handler="/metrics",code="200"} 2"#))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test(
        arguments: [
            ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "cannot open"),
            ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice is not a bcrypt hash"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "use RequireAndVerifyClientCert"
            ),
            ("basic_auth_user:\n  alice: x\n", "unknown key \"basic_auth_user\""),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.crt\n",
                "client_ca_file is set but client_auth_type is NoClientCert"
            ),
        ])
    func badConfigFileFailsStartupWithAClearMessage(text: String, expected: String) throws {
        let directory = ScratchDirectory()
        try directory.write("web.yml", text)
        let result = try runProcess(builtExecutable("taskwatchd"), daemonArguments(directory))
        #expect(result.status != 0)
        #expect(result.errorOutput.contains("web config \(directory.file("web.yml")):"), "\(result.errorOutput)")
        // The reason is a logfmt value now, its quotes escaped.
        #expect(
            result.errorOutput.contains(expected.replacingOccurrences(of: "\"", with: "\\\"")), "\(result.errorOutput)")
    }

    @Test func certificateAndKeyThatDoNotMatchFailStartup() throws {
        let directory = ScratchDirectory()
        try makeCertificate(in: directory)
        let other = ScratchDirectory()
        try makeCertificate(in: other)
        try directory.write(
            "web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: \(other.file("server.key"))\n")
        let result = try runProcess(builtExecutable("taskwatchd"), daemonArguments(directory))
        #expect(result.status != 0)
        // Named as a web config problem, with both files and GnuTLS's reason; it was libmicrohttpd's
        // "Failed to initialize TLS support" when the server started.
        #expect(
            result.errorOutput.contains(
                "web config \(directory.file("web.yml")): tls_server_config: cert_file \(directory.file("server.crt")) "
                    + "and key_file \(other.file("server.key")) cannot serve TLS: "),
            "\(result.errorOutput)")
    }

    /// TLS 1.2 offered static RSA key exchange (`AES128-GCM-SHA256`: no forward secrecy), which
    /// node_exporter no longer does and scanners flag, and no setting could turn it off.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func tls12OffersOnlyForwardSecretKeyExchange() throws {
        let directory = ScratchDirectory()
        let made = try runProcess(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rsa", "-keyout",
                directory.file("server.key"), "-out", directory.file("server.crt"), "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
        try #require(made.status == 0, "\(made.errorOutput)")
        try directory.write("web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
        let (daemon, port) = try startDaemon(in: directory)
        defer { daemon.signal(SIGTERM) }
        func handshake(_ cipher: String) throws -> Bool {
            try runProcess(
                "/usr/bin/openssl",
                ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_2", "-cipher", cipher], input: Data()
            ).status == 0
        }
        #expect(try handshake("ECDHE-RSA-AES128-GCM-SHA256"), "the harness: a forward-secret suite is served")
        #expect(try !handshake("AES128-GCM-SHA256"))
        #expect(try !handshake("AES256-SHA"))
    }
}

/// `taskwatchd` serving with `directory`'s `web.yml` on an ephemeral loopback port.
private func daemonArguments(_ directory: ScratchDirectory) -> [String] {
    [
        "--web.config.file", directory.file("web.yml"), "--web.listen-address", "127.0.0.1:0",
        "--ingest.socket", directory.file("ingest.sock"),
    ]
}

/// Starts `taskwatchd` with `daemonArguments(directory)`; returns it and the port it serves.
private func startDaemon(
    in directory: ScratchDirectory, extraArguments: [String] = []
) throws -> (ChildProcess, UInt16) {
    let daemon = try ChildProcess(
        builtExecutable("taskwatchd"), daemonArguments(directory) + extraArguments, log: directory.file("daemon.log"))
    let port = try #require(loggedPort(daemon), "daemon did not start: \(daemon.log)")
    return (daemon, port)
}

/// Starts `taskwatchd` serving HTTPS with a fresh self-signed `server.crt` in `directory`.
private func startTLSDaemon(
    in directory: ScratchDirectory, extraArguments: [String] = []
) throws -> (ChildProcess, UInt16) {
    try makeCertificate(in: directory)
    try directory.write("web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    return try startDaemon(in: directory, extraArguments: extraArguments)
}

/// Whether curl, trusting only `certificate`, completes a request to `url`.
private func verifies(_ url: String, against certificate: String) throws -> Bool {
    try runProcess("/usr/bin/curl", ["-sS", "--max-time", "10", "--cacert", certificate, "-o", "/dev/null", url])
        .status == 0
}
