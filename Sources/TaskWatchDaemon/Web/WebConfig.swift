import Glibc
import TaskWatchWire
import Yams

/// The exporter-toolkit web configuration (`--web.config.file`): TLS for the HTTP listeners and basic
/// auth users. Parsed as strictly as the exporter-toolkit does: an unknown key is an error, not a
/// silently ignored typo.
///
/// Supported:
/// ```yaml
/// tls_server_config:
///   cert_file: server.crt        # relative paths resolve against this file's directory
///   key_file: server.key
///   client_auth_type: NoClientCert
///   min_version: TLS12           # TLS10, TLS11, TLS12 (the default) or TLS13
///   max_version: TLS13
/// basic_auth_users:
///   alice: $2b$10$...            # bcrypt ($2a$, $2b$, $2y$)
/// ```
public struct WebConfig: Sendable, Equatable {
    /// TLS as read from the file: the certificate and key themselves, not their paths.
    public struct TLSConfig: Sendable, Equatable {
        public var certificateFile: String
        public var keyFile: String
        public var certificatePEM: String
        public var keyPEM: String
        public var minVersion: TLSVersion
        public var maxVersion: TLSVersion
        /// Which client certificates a request needs (`client_auth_type`).
        public var clientAuth: HTTPServer.ClientCertificates = .ignored
        /// `client_ca_file`, and its content: the CAs a client certificate must chain to.
        public var clientCAFile: String?
        public var clientCAPEM: String?
        /// `client_allowed_sans`: a verified client certificate must carry one of these subject
        /// alternative names (DNS name, e-mail address, URI or IP address, compared exactly); empty
        /// allows any.
        public var clientAllowedSANs: [String] = []

        /// The GnuTLS priority string allowing exactly the versions from `minVersion` to `maxVersion`.
        public var priorities: String {
            let versions = TLSVersion.allCases.filter { $0 >= minVersion && $0 <= maxVersion }
            // `-RSA`: forward-secret key exchange only, as `HTTPServer.defaultPriorities`.
            return "NORMAL:-RSA:-VERS-ALL" + versions.reversed().map { ":+VERS-\($0.gnuTLSName)" }.joined()
        }

        /// What `HTTPServer` takes.
        public var serverTLS: HTTPServer.TLS {
            HTTPServer.TLS(
                certificatePEM: certificatePEM, keyPEM: keyPEM, priorities: priorities, clientCAPEM: clientCAPEM,
                clientCertificates: clientAuth, clientAllowedSANs: clientAllowedSANs)
        }
    }

    /// TLS protocol versions, named as in the exporter-toolkit.
    public enum TLSVersion: String, Sendable, CaseIterable, Comparable {
        case tls10 = "TLS10"
        case tls11 = "TLS11"
        case tls12 = "TLS12"
        case tls13 = "TLS13"

        var gnuTLSName: String {
            switch self {
            case .tls10: "TLS1.0"
            case .tls11: "TLS1.1"
            case .tls12: "TLS1.2"
            case .tls13: "TLS1.3"
            }
        }

        public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    /// A config file that cannot be used, with a message naming the file and the problem.
    public struct LoadError: Error, CustomStringConvertible, Equatable {
        public let description: String

        public init(path: String, _ problem: String) { description = "web config \(path): \(problem)" }
    }

    /// nil serves plain HTTP.
    public var tls: TLSConfig?
    /// User name to bcrypt hash; empty means no authentication.
    public var basicAuthUsers: [String: String]
    /// `http_server_config.headers`: added to every response.
    public var responseHeaders: [String: String]
    /// `rate_limit`; nil (or an interval of 0) admits every request.
    public var rateLimit: RateLimit?

    public init(
        tls: TLSConfig? = nil, basicAuthUsers: [String: String] = [:], responseHeaders: [String: String] = [:],
        rateLimit: RateLimit? = nil
    ) {
        self.tls = tls
        self.basicAuthUsers = basicAuthUsers
        self.responseHeaders = responseHeaders
        self.rateLimit = rateLimit
    }

    /// The headers `http_server_config.headers` may set, with the values each allows (nil: any), as in
    /// the exporter-toolkit, which compares them exactly.
    static let configurableHeaders: [String: [String]?] = [
        "Content-Security-Policy": nil, "Strict-Transport-Security": nil, "X-XSS-Protection": nil,
        "X-Content-Type-Options": ["nosniff"], "X-Frame-Options": ["deny", "sameorigin"],
    ]

    /// Reads and validates the file at `path`, and the certificate and key files it names.
    public static func load(path: String) throws(LoadError) -> WebConfig {
        let text: String
        do { text = try readTextFile(path) } catch { throw LoadError(path: path, error.description) }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        return try parse(text, path: path, directory: directory.isEmpty ? "/" : directory)
    }

    /// Parses `text` as if read from `path`; relative file names resolve against `directory`.
    public static func parse(_ text: String, path: String, directory: String) throws(LoadError) -> WebConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw LoadError(path: path, "not valid YAML: \(error)")
        }
        // An empty file is valid and means "plain HTTP, no authentication", as in the exporter-toolkit.
        guard let root else { return WebConfig() }
        if isNull(root) { return WebConfig() }
        let top = try mapping(root, at: "top level", path: path)
        var config = WebConfig()
        for (key, value) in top {
            switch key {
            case "tls_server_config":
                if isNull(value) { continue }
                config.tls = try parseTLS(value, path: path, directory: directory)
            case "basic_auth_users":
                if isNull(value) { continue }
                for (user, hash) in try mapping(value, at: "basic_auth_users", path: path) {
                    config.basicAuthUsers[user] = try bcryptHash(hash, user: user, path: path)
                }
            case "http_server_config":
                if isNull(value) { continue }
                config.responseHeaders = try parseHTTPServer(value, path: path)
            case "rate_limit":
                if isNull(value) { continue }
                config.rateLimit = try parseRateLimit(value, path: path)
            default:
                throw LoadError(path: path, "unknown key \"\(key)\"\(lineText(value)) at top level")
            }
        }
        return config
    }

    /// exporter-toolkit `tls_server_config` keys taskwatchd does not serve.
    static let unsupportedTLSKeys: Set<String> = [
        "client_ca", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "cert", "key",
    ]

    private static func parseTLS(_ node: Node, path: String, directory: String) throws(LoadError) -> TLSConfig {
        var certFile: String?
        var keyFile: String?
        var clientAuthType = "NoClientCert"
        var clientCAFile: String?
        var allowedSANs: [String] = []
        var minVersion = TLSVersion.tls12
        var maxVersion = TLSVersion.tls13
        for (key, value) in try mapping(node, at: "tls_server_config", path: path) {
            if key == "client_allowed_sans" {
                allowedSANs = try strings(value, key: "tls_server_config.client_allowed_sans", path: path)
                continue
            }
            // Before the value's type is checked: `cipher_suites` is a list in the exporter-toolkit's
            // schema, and "must be a string" would send the operator after the wrong problem.
            if Self.unsupportedTLSKeys.contains(key) {
                throw LoadError(path: path, "tls_server_config.\(key) is not supported by taskwatchd")
            }
            let text = try scalar(value, key: "tls_server_config.\(key)", path: path)
            switch key {
            case "cert_file": certFile = text
            case "key_file": keyFile = text
            case "client_auth_type": clientAuthType = text.isEmpty ? "NoClientCert" : text
            case "client_ca_file": clientCAFile = text.isEmpty ? nil : text
            case "min_version", "max_version":
                guard let version = TLSVersion(rawValue: text) else {
                    throw LoadError(
                        path: path, "tls_server_config.\(key) must be TLS10, TLS11, TLS12 or TLS13, not \"\(text)\"")
                }
                if key == "min_version" { minVersion = version } else { maxVersion = version }
            default:
                throw LoadError(path: path, "unknown key \"\(key)\"\(lineText(value)) in tls_server_config")
            }
        }
        guard let certFile, !certFile.isEmpty else {
            throw LoadError(path: path, "tls_server_config needs cert_file")
        }
        guard let keyFile, !keyFile.isEmpty else { throw LoadError(path: path, "tls_server_config needs key_file") }
        guard minVersion <= maxVersion else {
            throw LoadError(path: path, "tls_server_config.min_version is above max_version")
        }
        let clientAuth = try clientCertificates(clientAuthType, caFile: clientCAFile, sans: allowedSANs, path: path)
        func resolved(_ file: String) -> String { file.hasPrefix("/") ? file : directory + "/" + file }
        let certPath = resolved(certFile)
        let keyPath = resolved(keyFile)
        var config = TLSConfig(
            certificateFile: certPath, keyFile: keyPath,
            certificatePEM: try pemFile(certPath, what: "cert_file", marker: "CERTIFICATE", path: path),
            keyPEM: try pemFile(keyPath, what: "key_file", marker: "PRIVATE KEY", path: path),
            minVersion: minVersion, maxVersion: maxVersion)
        if let reason = HTTPServer.keyPairError(certificatePEM: config.certificatePEM, keyPEM: config.keyPEM) {
            throw LoadError(
                path: path,
                "tls_server_config: cert_file \(certPath) and key_file \(keyPath) cannot serve TLS: \(reason)")
        }
        config.clientAuth = clientAuth
        config.clientAllowedSANs = allowedSANs
        // RequestClientCert asks for no verification, so its CAs go unused, as in the exporter-toolkit.
        if let clientCAFile, clientAuth != .ignored {
            config.clientCAFile = resolved(clientCAFile)
            let pem = try pemFile(resolved(clientCAFile), what: "client_ca_file", marker: "CERTIFICATE", path: path)
            if let reason = HTTPServer.trustError(pem) {
                throw LoadError(path: path, "tls_server_config.client_ca_file \(resolved(clientCAFile)): \(reason)")
            }
            config.clientCAPEM = pem
        }
        return config
    }

    /// `http_server_config`: response headers, and `http2`, which is accepted with either value since the
    /// exporter-toolkit defaults it to true: libmicrohttpd speaks HTTP/1.1 only, and a client that
    /// offers HTTP/2 through ALPN falls back to it.
    private static func parseHTTPServer(_ node: Node, path: String) throws(LoadError) -> [String: String] {
        var headers: [String: String] = [:]
        for (key, value) in try mapping(node, at: "http_server_config", path: path) {
            switch key {
            case "http2":
                let text = try scalar(value, key: "http_server_config.http2", path: path)
                guard ["true", "false"].contains(text) else {
                    throw LoadError(path: path, "http_server_config.http2 must be true or false, not \"\(text)\"")
                }
            case "headers":
                if isNull(value) { continue }
                for (name, headerValue) in try mapping(value, at: "http_server_config.headers", path: path) {
                    guard let allowed = configurableHeaders[name] else {
                        throw LoadError(
                            path: path,
                            "http_server_config.headers: \"\(name)\" cannot be set (only "
                                + configurableHeaders.keys.sorted().joined(separator: ", ") + ")")
                    }
                    let text = try scalar(headerValue, key: "http_server_config.headers.\(name)", path: path)
                    if let allowed, !allowed.contains(text) {
                        throw LoadError(
                            path: path,
                            "http_server_config.headers.\(name) must be "
                                + allowed.map { "\"\($0)\"" }.joined(separator: " or ") + ", not \"\(text)\"")
                    }
                    // Blank means unset, as in the exporter-toolkit.
                    if !text.isEmpty { headers[name] = text }
                }
            default:
                throw LoadError(path: path, "unknown key \"\(key)\"\(lineText(value)) in http_server_config")
            }
        }
        return headers
    }

    /// `rate_limit`: `interval` (a duration, 0 turns it off) and `burst` (at least 1 when on).
    private static func parseRateLimit(_ node: Node, path: String) throws(LoadError) -> RateLimit? {
        var interval: UInt64 = 0
        var burst = 0
        for (key, value) in try mapping(node, at: "rate_limit", path: path) {
            let text = try scalar(value, key: "rate_limit.\(key)", path: path)
            switch key {
            case "interval":
                guard let nanoseconds = DurationText.nanoseconds(text) else {
                    throw LoadError(path: path, "rate_limit.interval must be a duration like 1s, not \"\(text)\"")
                }
                interval = nanoseconds
            case "burst":
                guard let count = Int(text), count >= 0 else {
                    throw LoadError(path: path, "rate_limit.burst must be a whole number, not \"\(text)\"")
                }
                burst = count
            default:
                throw LoadError(path: path, "unknown key \"\(key)\"\(lineText(value)) in rate_limit")
            }
        }
        if interval == 0 { return nil }
        guard burst >= 1 else {
            throw LoadError(path: path, "rate_limit.burst must be at least 1, or every request would be refused")
        }
        return RateLimit(intervalNanoseconds: interval, burst: burst)
    }

    /// The policy for `client_auth_type`, checked against the settings it needs.
    ///
    /// Why not every exporter-toolkit value: libmicrohttpd asks clients for a certificate only when
    /// it has CAs to check them against, so the two modes that take any certificate unverified
    /// (RequireAnyClientCert; RequestClientCert, which also ignores it) cannot be served as such.
    /// RequestClientCert, which lets every client in, is served as NoClientCert; RequireAnyClientCert,
    /// which the exporter-toolkit itself calls insecure, is refused rather than weakened or tightened.
    private static func clientCertificates(
        _ type: String, caFile: String?, sans: [String], path: String
    ) throws(LoadError) -> HTTPServer.ClientCertificates {
        let policy: HTTPServer.ClientCertificates
        switch type {
        case "NoClientCert", "RequestClientCert": policy = .ignored
        case "VerifyClientCertIfGiven": policy = .verifiedIfGiven
        case "RequireAndVerifyClientCert": policy = .required
        case "RequireAnyClientCert", "RequireClientCert":
            // RequireClientCert: the exporter-toolkit's older name for RequireAnyClientCert.
            throw LoadError(
                path: path,
                "tls_server_config.client_auth_type \(type) is not supported: taskwatchd verifies "
                    + "client certificates against client_ca_file (use RequireAndVerifyClientCert)")
        default:
            throw LoadError(
                path: path,
                "tls_server_config.client_auth_type must be NoClientCert, RequestClientCert, "
                    + "VerifyClientCertIfGiven or RequireAndVerifyClientCert, not \"\(type)\"")
        }
        if policy != .ignored, caFile == nil {
            throw LoadError(path: path, "tls_server_config.client_auth_type \(type) needs client_ca_file")
        }
        // As the exporter-toolkit refuses it: an operator who sets the CAs expects them to be checked,
        // and serving would let every client in.
        if type == "NoClientCert", caFile != nil {
            throw LoadError(
                path: path,
                "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert (the default), "
                    + "which checks no client certificate: set client_auth_type to RequireAndVerifyClientCert "
                    + "or VerifyClientCertIfGiven")
        }
        if !sans.isEmpty, policy != .required {
            throw LoadError(
                path: path, "tls_server_config.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
        }
        return policy
    }

    private static func pemFile(
        _ file: String, what: String, marker: String, path: String
    ) throws(LoadError)
        -> String
    {
        let text: String
        do { text = try readTextFile(file) } catch {
            throw LoadError(path: path, "tls_server_config.\(what): \(error.description)")
        }
        guard text.contains("-----BEGIN "), text.contains(marker) else {
            throw LoadError(path: path, "tls_server_config.\(what) \(file) holds no PEM \(marker)")
        }
        return text
    }

    private static func bcryptHash(_ node: Node, user: String, path: String) throws(LoadError) -> String {
        let hash = try scalar(node, key: "basic_auth_users.\(user)", path: path)
        let bytes = Array(hash.utf8)
        let prefixes = ["$2a$", "$2b$", "$2y$"].map { Array($0.utf8) }
        guard bytes.count == 60, prefixes.contains(where: { bytes.starts(with: $0) }), bytes[6] == UInt8(ascii: "$"),
            let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)), (4...31).contains(cost)
        else {
            throw LoadError(
                path: path, "basic_auth_users.\(user) is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)")
        }
        return hash
    }

    // MARK: YAML helpers

    /// A plain scalar that YAML reads as null: empty, `~` or `null`.
    private static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    private static func lineText(_ node: Node) -> String {
        node.mark.map { " (line \($0.line))" } ?? ""
    }

    /// The pairs of a mapping whose keys are plain strings; a repeated key is an error.
    private static func mapping(_ node: Node, at place: String, path: String) throws(LoadError) -> [(String, Node)] {
        guard case .mapping(let mapping) = node else {
            throw LoadError(path: path, "\(place) must be a mapping\(lineText(node))")
        }
        var seen = Set<String>()
        var pairs: [(String, Node)] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                throw LoadError(path: path, "\(place) has a key that is not a string\(lineText(key))")
            }
            guard seen.insert(scalar.string).inserted else {
                throw LoadError(path: path, "\(place) repeats the key \"\(scalar.string)\"\(lineText(key))")
            }
            pairs.append((scalar.string, value))
        }
        return pairs
    }

    /// A sequence of strings.
    private static func strings(_ node: Node, key: String, path: String) throws(LoadError) -> [String] {
        if isNull(node) { return [] }
        guard case .sequence(let sequence) = node else {
            throw LoadError(path: path, "\(key) must be a list of strings\(lineText(node))")
        }
        var result: [String] = []
        for item in sequence { result.append(try scalar(item, key: key, path: path)) }
        return result
    }

    private static func scalar(_ node: Node, key: String, path: String) throws(LoadError) -> String {
        guard case .scalar(let scalar) = node else {
            throw LoadError(path: path, "\(key) must be a string\(lineText(node))")
        }
        return scalar.string
    }
}

/// A file-system failure, described with the file name and `strerror`.
struct FileReadError: Error, CustomStringConvertible {
    let description: String
}

/// Reads a whole (small) text file. Refuses anything over 1 MiB: config, certificates and keys are tiny.
func readTextFile(_ path: String) throws(FileReadError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileReadError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16_384)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count < 0 {
            if errno == EINTR { continue }
            throw FileReadError(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        if count == 0 { break }
        bytes += buffer[..<count]
        if bytes.count > 1 << 20 { throw FileReadError(description: "\(path) is larger than 1 MiB") }
    }
    return String(decoding: bytes, as: UTF8.self)
}
