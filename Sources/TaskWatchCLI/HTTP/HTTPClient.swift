import Glibc

/// A response to a plain HTTP/1.1 GET.
struct HTTPResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Why a request failed, in words a person at a terminal can act on.
struct HTTPError: Error, CustomStringConvertible {
    var description: String
}

/// A minimal HTTP/1.1 client: one GET per TCP connection, `Connection: close`, identity encoding,
/// `Content-Length`, chunked or read-to-close bodies. Enough to read taskwatchd, nothing more.
struct HTTPClient: Sendable {
    /// `host:port`, `:port`, `[v6]:port` or a bare host (port 10101).
    var address: String
    var timeoutMilliseconds: Int32 = 5_000

    init(address: String, timeoutMilliseconds: Int32 = 5_000) {
        self.address = address
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Splits `address` into host and port.
    static func split(_ address: String) -> (host: String, port: String) {
        var text = Substring(address)
        if text.hasPrefix("http://") { text = text.dropFirst(7) }
        if let slash = text.firstIndex(of: "/") { text = text[..<slash] }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            return (host, rest.hasPrefix(":") ? String(rest.dropFirst()) : "10101")
        }
        if let colon = text.lastIndex(of: ":") {
            let host = text[..<colon]
            return (host.isEmpty ? "localhost" : String(host), String(text[text.index(after: colon)...]))
        }
        return (text.isEmpty ? "localhost" : String(text), "10101")
    }

    func get(_ path: String) throws -> HTTPResponse {
        if address.hasPrefix("https://") {
            throw HTTPError(
                description: "\(address): taskwatch reads taskwatchd over plain HTTP only. \(Self.tlsAdvice)")
        }
        let (host, port) = Self.split(address)
        let fd = try connect(host: host, port: port)
        defer { close(fd) }
        let request =
            "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: taskwatch\r\n"
            + "Accept: text/plain;version=0.0.4\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
        var bytes = Array(request.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeMutableBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, 0) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw HTTPError(description: "sending to \(address): \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw HTTPError(description: "\(address) did not answer within \(timeoutMilliseconds) ms")
                }
                throw HTTPError(description: "reading from \(address): \(String(cString: strerror(errno)))")
            }
            received += buffer[0..<count]
            if received.count > 256 << 20 { throw HTTPError(description: "response from \(address) over 256 MiB") }
        }
        return try Self.parse(received, from: address)
    }

    /// What to do instead against a daemon that serves HTTPS.
    static let tlsAdvice =
        "If taskwatchd serves TLS (tls_server_config in --web.config.file), read it with curl, e.g. "
        + "curl --cacert CA.crt https://HOST:PORT/metrics, or run taskwatch against a plain-HTTP listener."

    /// Parses a complete response read until the server closed the connection.
    static func parse(_ bytes: [UInt8], from address: String) throws -> HTTPResponse {
        // A TLS server meets a plain request by closing at once or with a TLS alert record
        // (content type 21, then the 3.x version): neither is a broken daemon, so say what it is.
        if bytes.isEmpty {
            throw HTTPError(description: "\(address) closed the connection without an answer. \(tlsAdvice)")
        }
        if bytes.count >= 2, bytes[0] == 21 || bytes[0] == 22, bytes[1] == 3 {
            throw HTTPError(description: "\(address) answered in TLS, not plain HTTP. \(tlsAdvice)")
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.firstRange(of: separator) else {
            throw HTTPError(description: "\(address) sent no complete HTTP header")
        }
        let head = String(decoding: bytes[..<end.lowerBound], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/"), let status = Int(statusParts[1]) else {
            throw HTTPError(description: "\(address) did not speak HTTP")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
            headers[line[..<colon].lowercased()] = String(value)
        }
        var body = Array(bytes[end.upperBound...])
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            body = try dechunk(body, from: address)
        } else if let length = headers["content-length"].flatMap({ Int($0) }), length <= body.count {
            body = Array(body[..<length])
        }
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    static func dechunk(_ bytes: [UInt8], from address: String) throws -> [UInt8] {
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstRange(of: [13, 10]) else { break }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self)
            let hex = sizeText.split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(hex.trimmingCharacters(in: " "), radix: 16) else {
                throw HTTPError(description: "\(address) sent a bad chunk size")
            }
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard start + size <= bytes.count else { throw HTTPError(description: "\(address) cut a chunk short") }
            output += bytes[start..<start + size]
            index = start + size + 2
        }
        return output
    }

    private func connect(host: String, port: String) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, port, &hints, &list)
        guard status == 0, let first = list else {
            throw HTTPError(description: "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            cursor = entry.pointee.ai_next
            let fd = socket(entry.pointee.ai_family, entry.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            var timeout = timeval(
                tv_sec: Int(timeoutMilliseconds / 1_000), tv_usec: Int(timeoutMilliseconds % 1_000) * 1_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if Glibc.connect(fd, entry.pointee.ai_addr, entry.pointee.ai_addrlen) == 0 { return fd }
            lastError = String(cString: strerror(errno))
            close(fd)
        }
        throw HTTPError(description: "cannot connect to \(host):\(port): \(lastError)")
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var text = Substring(self)
        while text.first == set { text = text.dropFirst() }
        while text.last == set { text = text.dropLast() }
        return String(text)
    }
}
