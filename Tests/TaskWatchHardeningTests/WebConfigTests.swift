import Foundation
import Logging
import Synchronization
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

/// A clock the test moves by hand.
final class ManualClock: DaemonClock {
    let now = Atomic<UInt64>(1_000)

    func monotonicNanoseconds() -> UInt64 { now.load(ordering: .relaxed) }
    func wallSeconds() -> Double { 0 }
}

/// A bcrypt hash of `password` at the lowest cost, made with our own crypt_r binding.
func quickHash(_ password: String, cost: UInt = 4) throws -> String {
    try #require(BasicAuthenticator.hash(password: Array(password.utf8), cost: cost))
}

@Suite struct WebConfigTests {
    @Test func fullConfigResolvesRelativePathsAndVersions() throws {
        let directory = ScratchDirectory()
        try makeCertificate(in: directory)
        let hash = try quickHash("pw")
        try directory.write(
            "web.yml",
            """
            tls_server_config:
              cert_file: server.crt
              key_file: \(directory.file("server.key"))
              client_auth_type: NoClientCert
              min_version: TLS13
            basic_auth_users:
              alice: \(hash)
            """)
        let config = try WebConfig.load(path: directory.file("web.yml"))
        let tls = try #require(config.tls)
        #expect(tls.certificateFile == directory.file("server.crt"))
        #expect(tls.certificatePEM.contains("BEGIN CERTIFICATE"))
        #expect(tls.keyPEM.contains("PRIVATE KEY"))
        #expect(tls.priorities == "NORMAL:-RSA:-VERS-ALL:+VERS-TLS1.3")
        #expect(config.basicAuthUsers == ["alice": hash])
    }

    @Test func clientCertificateSettingsAreRead() throws {
        let directory = ScratchDirectory()
        try makeCertificate(in: directory)
        try directory.write("ca.crt", try String(contentsOfFile: directory.file("server.crt"), encoding: .utf8))
        let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        func tls(_ lines: String) throws -> WebConfig.TLSConfig {
            try directory.write("web.yml", base + lines)
            return try #require(try WebConfig.load(path: directory.file("web.yml")).tls)
        }
        let required = try tls(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
                + "  client_allowed_sans:\n    - prometheus.example\n    - 10.0.0.7\n")
        #expect(required.clientAuth == .required)
        #expect(required.clientCAFile == directory.file("ca.crt"))
        #expect(required.clientCAPEM?.contains("BEGIN CERTIFICATE") == true)
        #expect(required.clientAllowedSANs == ["prometheus.example", "10.0.0.7"])
        #expect(required.serverTLS.clientCertificates == .required)
        #expect(required.serverTLS.clientCAPEM == required.clientCAPEM)
        let ifGiven = try tls("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n")
        #expect(ifGiven.clientAuth == .verifiedIfGiven)
        // RequestClientCert lets every client in, with or without CAs: they go unused.
        for lines in [
            "  client_auth_type: RequestClientCert\n",
            "  client_auth_type: RequestClientCert\n  client_ca_file: ca.crt\n",
        ] {
            let ignored = try tls(lines)
            #expect(ignored.clientAuth == .ignored)
            #expect(ignored.serverTLS.clientCAPEM == nil)
        }
        // A review's repro: CAs without a policy served every client, where the exporter-toolkit (and
        // node_exporter) refuse the file.
        for lines in ["  client_ca_file: ca.crt\n", "  client_auth_type: NoClientCert\n  client_ca_file: ca.crt\n"] {
            #expect {
                try tls(lines)
            } throws: { error in
                "\(error)".contains("client_ca_file is set but client_auth_type is NoClientCert")
            }
        }
        // A CA file with no certificate GnuTLS can read.
        try directory.write("junk.crt", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        #expect {
            try tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: junk.crt\n")
        } throws: { error in
            "\(error)".contains("tls_server_config.client_ca_file \(directory.file("junk.crt")):")
        }
    }

    @Test func httpServerConfigSetsResponseHeaders() throws {
        let text = """
            http_server_config:
              http2: true
              headers:
                Strict-Transport-Security: max-age=31536000
                X-Frame-Options: deny
                X-Content-Type-Options: nosniff
                Content-Security-Policy: ""
            """
        let config = try WebConfig.parse(text, path: "w.yml", directory: ".")
        // A blank value leaves the header unset, as in the exporter-toolkit.
        #expect(
            config.responseHeaders == [
                "Strict-Transport-Security": "max-age=31536000", "X-Frame-Options": "deny",
                "X-Content-Type-Options": "nosniff",
            ])
        #expect(try WebConfig.parse("http_server_config:\n", path: "w.yml", directory: ".") == WebConfig())
    }

    @Test func defaultVersionsAreTLS12AndUp() {
        let tls = WebConfig.TLSConfig(
            certificateFile: "", keyFile: "", certificatePEM: "", keyPEM: "", minVersion: .tls12, maxVersion: .tls13)
        #expect(tls.priorities == "NORMAL:-RSA:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2")
        #expect(tls.priorities == HTTPServer.defaultPriorities)
    }

    @Test func emptyFileMeansPlainHTTPWithoutAuth() throws {
        #expect(try WebConfig.parse("", path: "w.yml", directory: ".") == WebConfig())
        #expect(try WebConfig.parse("# nothing\n", path: "w.yml", directory: ".") == WebConfig())
        #expect(try WebConfig.parse("basic_auth_users:\n", path: "w.yml", directory: ".") == WebConfig())
    }

    @Test(
        arguments: [
            ("tls_server_confg:\n  cert_file: a\n", "unknown key \"tls_server_confg\""),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n", "unknown key \"bogus\""),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_auth_type RequireAndVerifyClientCert needs client_ca_file"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n",
                "client_auth_type VerifyClientCertIfGiven needs client_ca_file"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "RequireAnyClientCert is not supported: taskwatchd verifies client certificates"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireClientCert\n",
                "RequireClientCert is not supported: taskwatchd verifies client certificates"
            ),
            // The exporter-toolkit's schema has lists here: told it is unsupported, not that it is no string.
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "tls_server_config.cipher_suites is not supported by taskwatchd"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519]\n",
                "tls_server_config.curve_preferences is not supported by taskwatchd"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
                "client_auth_type must be NoClientCert, RequestClientCert"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.crt\n"
                    + "  client_auth_type: VerifyClientCertIfGiven\n  client_allowed_sans: [x]\n",
                "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert"
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: x\n",
                "client_allowed_sans must be a list of strings"
            ),
            ("tls_server_config:\n  key_file: b\n", "needs cert_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n", "must be TLS10"),
            ("tls_server_config:\n  cert_file: /nonexistent/a.crt\n  key_file: b\n", "cannot open /nonexistent/a.crt"),
            ("basic_auth_users:\n  bob: plaintext\n", "basic_auth_users.bob is not a bcrypt hash"),
            ("basic_auth_users: [a, b]\n", "basic_auth_users must be a mapping"),
            ("basic_auth_users:\n  bob: x\n  bob: y\n", "repeats the key \"bob\""),
            ("http_server_config:\n  http2: maybe\n", "http_server_config.http2 must be true or false"),
            ("http_server_config:\n  rate_limit: 1\n", "unknown key \"rate_limit\""),
            ("rate_limit:\n  interval: 1s\n  burst: 0\n", "rate_limit.burst must be at least 1"),
            ("rate_limit:\n  interval: soon\n  burst: 1\n", "rate_limit.interval must be a duration"),
            ("rate_limit:\n  interval: 1s\n  burst: -1\n", "rate_limit.burst must be a whole number"),
            ("rate_limit:\n  every: 1s\n", "unknown key \"every\""),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "\"Server\" cannot be set (only Content-Security-Policy, Strict-Transport-Security"
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "X-Frame-Options must be \"deny\" or \"sameorigin\", not \"allow\""
            ),
            ("a: [unclosed\n", "not valid YAML"),
            ("- just\n- a list\n", "top level must be a mapping"),
        ])
    func badConfigsNameTheFileAndTheProblem(text: String, expected: String) {
        #expect {
            try WebConfig.parse(text, path: "/etc/taskwatch/web.yml", directory: "/etc/taskwatch")
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("web config /etc/taskwatch/web.yml: ") && message.contains(expected)
        }
    }

    @Test func missingFileIsAClearError() {
        #expect {
            try WebConfig.load(path: "/nonexistent/web.yml")
        } throws: { "\($0)".contains("web config /nonexistent/web.yml: cannot open /nonexistent/web.yml") }
    }
}

@Suite struct BasicAuthParsingTests {
    @Test func base64RoundTripsWithAndWithoutPadding() {
        #expect(Base64.decode(Array("YWxpY2U6c2VjcmV0".utf8)) == Array("alice:secret".utf8))
        #expect(Base64.decode(Array("YQ==".utf8)) == Array("a".utf8))
        #expect(Base64.decode(Array("YQ".utf8)) == Array("a".utf8))
        #expect(Base64.decode(Array("YWI=".utf8)) == Array("ab".utf8))
        #expect(Base64.decode(Array("".utf8)) == [])
    }

    @Test(arguments: ["Y", "YQ=", "YQ===", "Y Q==", "YR==", "####", "YQ==YQ==", "=", "\u{00e9}"])
    func malformedBase64IsRefused(text: String) {
        #expect(Base64.decode(Array(text.utf8)) == nil)
    }

    @Test func base64NeverTrapsOnRandomInput() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ABCxyz019+/=-_ \t:".utf8) + [0, 0xff]
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...24, using: &generator)
            let bytes = (0..<count).map { _ in alphabet.randomElement(using: &generator)! }
            if let decoded = Base64.decode(bytes) { #expect(decoded.count <= count) }
        }
    }

    @Test func authorizationHeaderParsing() {
        #expect(
            BasicCredentials(authorization: "Basic YWxpY2U6c2VjcmV0")
                == BasicCredentials(user: "alice", password: Array("secret".utf8)))
        #expect(BasicCredentials(authorization: "  bAsIc   YWxpY2U6c2VjcmV0 ")?.user == "alice")
        // A colon in the password stays in the password.
        #expect(BasicCredentials(authorization: "Basic YTpiOmM=")?.password == Array("b:c".utf8))
        #expect(BasicCredentials(authorization: "Basic YTo=")?.password == [])
        for bad in [nil, "", "Basic", "Basic ", "Bearer YWxpY2U6c2VjcmV0", "BasicYWxpY2U6c2VjcmV0", "Basic YWxpY2U="] {
            #expect(BasicCredentials(authorization: bad) == nil, "\(String(describing: bad))")
        }
        // "\xff:pw": a user name that is not UTF-8 is refused rather than mangled.
        #expect(BasicCredentials(authorization: "Basic /zpwdw==") == nil)
    }

    @Test func constantTimeEqualityIsExact() {
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 3, 0]))
        #expect(!constantTimeEqual([], [0]))
        #expect(constantTimeEqual([], []))
    }
}

@Suite struct BasicAuthenticatorTests {
    @Test func rightPasswordIsCachedWrongPasswordAlwaysRunsBcrypt() throws {
        let clock = ManualClock()
        let authenticator = BasicAuthenticator(
            users: ["alice": try quickHash("secret")], cacheTTL: .seconds(60), clock: clock)
        let initial = authenticator.bcryptCount
        #expect(authenticator.verify(user: "alice", password: Array("secret".utf8)))
        #expect(authenticator.bcryptCount == initial + 1)
        for _ in 0..<5 { #expect(authenticator.verify(user: "alice", password: Array("secret".utf8))) }
        #expect(authenticator.bcryptCount == initial + 1, "cached successes skip bcrypt")
        for attempt in 1...3 {
            #expect(!authenticator.verify(user: "alice", password: Array("secreT".utf8)))
            #expect(authenticator.bcryptCount == initial + 1 + UInt64(attempt), "every wrong password is checked")
        }
        // A prefix or extension of the cached password is not the cached password.
        #expect(!authenticator.verify(user: "alice", password: Array("secret\u{0}".utf8)))
        #expect(!authenticator.verify(user: "alice", password: Array("secre".utf8)))
        clock.now.add(61_000_000_000, ordering: .relaxed)
        let beforeExpiry = authenticator.bcryptCount
        #expect(authenticator.verify(user: "alice", password: Array("secret".utf8)))
        #expect(authenticator.bcryptCount == beforeExpiry + 1, "an expired entry is verified again")
    }

    @Test func unknownUserPaysForBcryptToo() throws {
        let authenticator = BasicAuthenticator(users: ["alice": try quickHash("secret")])
        let before = authenticator.bcryptCount
        #expect(!authenticator.verify(user: "mallory", password: Array("secret".utf8)))
        #expect(authenticator.bcryptCount == before + 1)
    }

    @Test func refusalIsAChallengeWithNoInformation() throws {
        let authenticator = BasicAuthenticator(users: ["alice": try quickHash("secret")])
        let refused = try #require(authenticator.authorize(HTTPRequest(method: "GET", path: "/metrics")))
        #expect(refused.status == 401)
        #expect(refused.header("WWW-Authenticate") == "Basic realm=\"taskwatchd\"")
        #expect(refused.body == Array("Unauthorized\n".utf8))
        let good = HTTPRequest(
            method: "GET", path: "/metrics", headers: HTTPHeaders([("Authorization", "Basic YWxpY2U6c2VjcmV0")]))
        #expect(authenticator.authorize(good) == nil)
        #expect(BasicAuthenticator(users: [:]).authorize(HTTPRequest(method: "GET", path: "/")) == nil)
    }

    @Test func reloadSwapsUsersAndKeepsTheOldConfigOnABadFile() throws {
        let directory = ScratchDirectory()
        try directory.write("web.yml", "basic_auth_users:\n  alice: \(try quickHash("one"))\n")
        let state = try WebConfigState(path: directory.file("web.yml"))
        let header = { (password: String) in
            HTTPRequest(
                method: "GET", path: "/metrics",
                headers: HTTPHeaders([
                    ("Authorization", "Basic " + Data("alice:\(password)".utf8).base64EncodedString())
                ]))
        }
        #expect(state.authorize(header("one")) == nil)
        try directory.write("web.yml", "basic_auth_users:\n  alice: \(try quickHash("two"))\n")
        #expect(state.reload(logger: .init(label: "test")))
        #expect(state.authorize(header("one"))?.status == 401)
        #expect(state.authorize(header("two")) == nil)
        #expect(state.lastReload.lastReloadSuccessful)
        try directory.write("web.yml", "basic_auth_users:\n  alice: not-a-hash\n")
        #expect(!state.reload(logger: .init(label: "test")))
        #expect(state.authorize(header("two")) == nil, "a bad file keeps the previous users")
        #expect(!state.lastReload.lastReloadSuccessful)
        try directory.write("web.yml", "basic_auth_users:\n  alice: \(try quickHash("two"))\n")
        #expect(state.reload(logger: .init(label: "test")))
        #expect(state.lastReload.lastReloadSuccessful, "a good file after a bad one is in force again")
    }

    @Test func reloadAppliesChangedTLSFirstAndChangesNothingWhenThatFails() throws {
        let directory = ScratchDirectory()
        try makeCertificate(in: directory)
        let tlsLines = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        try directory.write("web.yml", tlsLines + "basic_auth_users:\n  alice: \(try quickHash("one"))\n")
        let state = try WebConfigState(path: directory.file("web.yml"))
        let startCertificate = try #require(state.config.tls?.certificatePEM)
        let applied = Mutex<[WebConfig.TLSConfig?]>([])
        struct Refused: Error {}

        // Users only: TLS is not touched.
        try directory.write("web.yml", tlsLines + "basic_auth_users:\n  alice: \(try quickHash("two"))\n")
        #expect(state.reload(logger: .init(label: "test")) { tls in applied.withLock { $0.append(tls) } })
        #expect(applied.withLock { $0.isEmpty })

        // The certificate renewed in place: same paths, new content.
        try makeCertificate(in: directory)
        #expect(state.reload(logger: .init(label: "test")) { tls in applied.withLock { $0.append(tls) } })
        let renewed = try #require(applied.withLock { $0.last } ?? nil)
        let succeeded = state.lastReload
        #expect(succeeded.lastReloadSuccessful)
        #expect(renewed.certificatePEM != startCertificate)
        #expect(state.config.tls == renewed)

        // The listeners refuse the next change: users and TLS both stay as they were.
        try makeCertificate(in: directory)
        try directory.write("web.yml", tlsLines + "basic_auth_users:\n  alice: \(try quickHash("three"))\n")
        #expect(!state.reload(logger: .init(label: "test")) { _ in throw Refused() })
        #expect(state.config.tls == renewed)
        // Exported for alerting: the failure, and the time of the config still in force.
        #expect(!state.lastReload.lastReloadSuccessful)
        #expect(state.lastReload.lastSuccessSeconds == succeeded.lastSuccessSeconds)
        let request = HTTPRequest(
            method: "GET", path: "/metrics",
            headers: HTTPHeaders([("Authorization", "Basic " + Data("alice:two".utf8).base64EncodedString())]))
        #expect(state.authorize(request) == nil, "the users from before the failed reload stay")
    }

    @Test func checkActsOnlyOnAChangedFileAndLogsARepeatedFailureOnce() throws {
        let directory = ScratchDirectory()
        try directory.write("web.yml", "basic_auth_users:\n  alice: \(try quickHash("one"))\n")
        let state = try WebConfigState(path: directory.file("web.yml"))
        let log = CapturedLog()
        let logger = Logger(label: "test") { _ in CapturingLogHandler(log: log) }
        let started = state.lastReload

        // Unchanged: nothing happens, nothing is logged, the timestamp stays.
        #expect(state.reload(logger: logger, trigger: .check))
        #expect(log.lines.withLock { $0.isEmpty })
        #expect(state.lastReload == started)

        // Broken: logged once however many checks see it; SIGHUP logs it again.
        try directory.write("web.yml", "basic_auth_users: [broken\n")
        for _ in 0..<3 { #expect(!state.reload(logger: logger, trigger: .check)) }
        #expect(log.lines.withLock { $0 }.filter { $0.contains("reload failed") }.count == 1)
        #expect(!state.reload(logger: logger, trigger: .signal))
        #expect(log.lines.withLock { $0 }.filter { $0.contains("reload failed") }.count == 2)
        #expect(!state.lastReload.lastReloadSuccessful)

        // Put back as it was: the check sees a good file again, with the same config in force.
        try directory.write("web.yml", "basic_auth_users:\n  alice: \(try quickHash("one"))\n")
        #expect(state.reload(logger: logger, trigger: .check))
        #expect(state.lastReload.lastReloadSuccessful)

        // Changed: applied and logged as a file change.
        try directory.write("web.yml", "basic_auth_users:\n  bob: \(try quickHash("two"))\n")
        #expect(state.reload(logger: logger, trigger: .check))
        #expect(state.config.basicAuthUsers.keys.sorted() == ["bob"])
        #expect(
            log.lines.withLock { $0 }.contains { $0.contains("Web config reloaded") && $0.contains("file changed") })
    }
}

@Suite struct RateLimitTests {
    @Test func rateLimitIsRead() throws {
        let limit = try WebConfig.parse("rate_limit:\n  interval: 250ms\n  burst: 3\n", path: "w", directory: ".")
        #expect(limit.rateLimit == RateLimit(intervalNanoseconds: 250_000_000, burst: 3))
        #expect(try WebConfig.parse("rate_limit:\n  interval: 0\n", path: "w", directory: ".").rateLimit == nil)
    }

    @Test func bucketGivesItsBurstThenOneTokenPerInterval() {
        var bucket = TokenBucket(RateLimit(intervalNanoseconds: 1_000, burst: 3), now: 10_000)
        for _ in 0..<3 { #expect(bucket.take(now: 10_000) == nil) }
        #expect(bucket.take(now: 10_000) == 1_000, "empty: the next token is one interval away")
        #expect(bucket.take(now: 10_400) == 600)
        #expect(bucket.take(now: 11_000) == nil)
        #expect(bucket.take(now: 11_000) == 1_000)
        // A long quiet spell saves no more than the burst.
        for _ in 0..<3 { #expect(bucket.take(now: 1_000_000) == nil) }
        #expect(bucket.take(now: 1_000_000) != nil)
    }

    @Test func tooManyRequestsSaysWhenToComeBack() {
        let response = RateLimit.tooManyRequests(retryAfterNanoseconds: 1_200_000_000)
        #expect(response.status == 429)
        #expect(response.header("Retry-After") == "2")
        #expect(RateLimit.tooManyRequests(retryAfterNanoseconds: 5).header("Retry-After") == "1")
    }

    @Test func stateAdmitsCountsAndKeepsItsBucketOverAReloadThatKeepsTheLimit() throws {
        let directory = ScratchDirectory()
        let limit = "rate_limit:\n  interval: 1h\n  burst: 2\n"
        try directory.write("web.yml", limit)
        let state = try WebConfigState(path: directory.file("web.yml"))
        #expect(state.admit() == nil)
        #expect(state.admit() == nil)
        #expect(state.admit()?.status == 429)
        #expect(state.lastReload.requestsLimited == 1)
        // New headers, same limit: still empty.
        try directory.write("web.yml", limit + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
        #expect(state.reload(logger: Logger(label: "test")))
        #expect(state.admit()?.status == 429)
        #expect(state.responseHeaders.map(\.0) == ["X-Frame-Options"])
        // A new limit starts full; none admits everything.
        try directory.write("web.yml", "rate_limit:\n  interval: 1h\n  burst: 1\n")
        #expect(state.reload(logger: Logger(label: "test")))
        #expect(state.admit() == nil)
        try directory.write("web.yml", "")
        #expect(state.reload(logger: Logger(label: "test")))
        for _ in 0..<10 { #expect(state.admit() == nil) }
        #expect(state.lastReload.requestsLimited == 2)
    }
}

/// Log lines as text, message and metadata, for tests that check what was logged and how often.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        log.lines.withLock { $0.append(([event.message.description] + fields).joined(separator: " ")) }
    }
}
