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
/// `Content-Length`, chunked or read-to-close bodies. Enough to read taskwatchd, nothing more. A request
/// ends at `timeoutMilliseconds` whatever the server does, and at once on a stop request (`StopSignal`).
struct HTTPClient: Sendable {
    /// `host:port`, `:port`, `[v6]:port` or a bare host (port 10101).
    var address: String
    /// The most one request takes, from connecting to the last byte.
    var timeoutMilliseconds: Int32 = 5_000
    /// The `Authorization` header's value sent with every request, if any.
    var authorization: String?

    init(address: String, timeoutMilliseconds: Int32 = 5_000) {
        self.address = address
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// The `Authorization` value for basic auth (RFC 7617: base64 of `user:password` in UTF-8).
    static func basicAuthorization(user: String, password: String) -> String {
        "Basic " + base64(Array("\(user):\(password)".utf8))
    }

    /// Standard base64 with padding; here so the client needs no Foundation.
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        for start in stride(from: 0, to: bytes.count, by: 3) {
            let chunk = bytes[start..<min(start + 3, bytes.count)]
            var group = 0
            for (offset, byte) in chunk.enumerated() { group |= Int(byte) << (16 - 8 * offset) }
            for index in 0..<4 {
                output.append(index <= chunk.count ? alphabet[(group >> (18 - 6 * index)) & 63] : UInt8(ascii: "="))
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Splits `address` into host and port.
    static func split(_ address: String) -> (host: String, port: String) {
        var text = Substring(address)
        // https:// too, so that its port is checked like any other; get() then says TLS is not spoken.
        if text.hasPrefix("http://") {
            text = text.dropFirst(7)
        } else if text.hasPrefix("https://") {
            text = text.dropFirst(8)
        }
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
        if address.hasPrefix("https://") { throw HTTPError(description: "\(address): \(Self.needsPlainHTTP)") }
        let (host, port) = Self.split(address)
        let request =
            "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: taskwatch\r\n"
            + "Accept: text/plain;version=0.0.4\r\nAccept-Encoding: identity\r\nConnection: close\r\n"
            + (authorization.map { "Authorization: \($0)\r\n" } ?? "") + "\r\n"
        let received = try exchange(Array(request.utf8), host: host, port: port, untilClosed: true)
        // A TLS server may close on a plain request without a word (libmicrohttpd does): ask it in TLS,
        // and a TLS record in reply settles what it speaks.
        if received.isEmpty,
            let reply = try? exchange(Self.clientHello, host: host, port: port, untilClosed: false),
            Self.isTLSRecord(reply)
        {
            throw HTTPError(description: "\(address): \(Self.needsPlainHTTP)")
        }
        return try Self.parse(received, from: address)
    }

    /// Sends `request` on a new connection and reads the answer: all of it until the server closes,
    /// or (`untilClosed` false) the first bytes that arrive. The whole exchange, connecting included,
    /// has `timeoutMilliseconds`: a server that trickles a byte at a time cannot hold it longer.
    private func exchange(_ request: [UInt8], host: String, port: String, untilClosed: Bool) throws -> [UInt8] {
        let deadline = monotonicNanoseconds() + UInt64(max(1, timeoutMilliseconds)) * 1_000_000
        let fd = try connect(host: host, port: port, deadline: deadline)
        defer { close(fd) }
        var offset = 0
        while offset < request.count {
            try wait(fd, for: Int16(POLLOUT), until: deadline)
            let sent = request.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw HTTPError(description: "sending to \(address): \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            try wait(fd, for: Int16(POLLIN), until: deadline)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw HTTPError(description: "reading from \(address): \(String(cString: strerror(errno)))")
            }
            received += buffer[0..<count]
            if !untilClosed { break }
            if received.count > 256 << 20 { throw HTTPError(description: "response from \(address) over 256 MiB") }
        }
        return received
    }

    /// Waits until `fd` is ready for `events`. In slices of at most 100 ms, so a stop (SIGINT in `top`)
    /// is seen at once even when the signal went to another thread and interrupted nothing here.
    /// Throws `StopRequested` on a stop, and at `deadline`.
    private func wait(_ fd: Int32, for events: Int16, until deadline: UInt64) throws {
        while true {
            if StopSignal.isRequested { throw StopRequested() }
            let now = monotonicNanoseconds()
            guard now < deadline else {
                throw HTTPError(description: "\(address) did not answer within \(timeoutMilliseconds) ms")
            }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(min((deadline - now) / 1_000_000 + 1, 100)))
            if ready > 0 { return }
            if ready < 0, errno != EINTR {
                throw HTTPError(description: "waiting for \(address): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// A minimal TLS ClientHello: a TLS 1.0 record holding a TLS 1.2 hello with four common AES-GCM
    /// suites and no extensions. Any TLS server answers it with a handshake or an alert record.
    static let clientHello: [UInt8] = {
        let suites: [UInt8] = [0x13, 0x01, 0xC0, 0x2F, 0xC0, 0x2B, 0x00, 0x9C]
        // Version, a zero random (this is a probe, not a session), no session id, suites, null compression.
        let body: [UInt8] =
            [3, 3] + [UInt8](repeating: 0, count: 32) + [0] + [0, UInt8(suites.count)] + suites + [1, 0]
        let handshake: [UInt8] = [1, 0, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        return [22, 3, 1, UInt8(handshake.count >> 8), UInt8(handshake.count & 0xFF)] + handshake
    }()

    /// Whether `bytes` begin a TLS alert (content type 21) or handshake (22) record of version 3.x.
    static func isTLSRecord(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && (bytes[0] == 21 || bytes[0] == 22) && bytes[1] == 3
    }

    /// Why a TLS listener cannot be read, and what to use instead.
    static let needsPlainHTTP =
        "the endpoint speaks TLS; the taskwatch CLI needs a plain-HTTP listener "
        + "(read a TLS one with e.g. curl --cacert CA.crt https://HOST:PORT/metrics)"

    /// A hint for a status that usually means a flag is missing or wrong; empty for the others. A 401
    /// to a request that sent credentials means they were wrong, not missing.
    func hint(status: Int) -> String {
        switch status {
        case 401 where authorization != nil:
            " (the daemon refused the user and password: check --basic-auth-user and $\(basicAuthPasswordVariable))"
        case 401: " (give --basic-auth-user, with the password in $\(basicAuthPasswordVariable))"
        case 404: " (is --path the daemon's --web.telemetry-path?)"
        default: ""
        }
    }

    /// Parses a complete response read until the server closed the connection.
    static func parse(_ bytes: [UInt8], from address: String) throws -> HTTPResponse {
        // A TLS server meets a plain request with a TLS alert record, or by closing at once (which
        // get() looks into further): neither is a broken daemon, so say what it is.
        if bytes.isEmpty {
            throw HTTPError(
                description: "\(address) closed the connection without an answer (if the endpoint speaks TLS: "
                    + "the taskwatch CLI needs a plain-HTTP listener)")
        }
        if isTLSRecord(bytes) { throw HTTPError(description: "\(address): \(needsPlainHTTP)") }
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
        } else if let lengthText = headers["content-length"]?.trimmingCharacters(in: " ") {
            // Digits only: `Int` takes a sign, and a negative length trapped on the slice below.
            guard !lengthText.isEmpty, lengthText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                throw HTTPError(description: "\(address) sent a bad Content-Length: \(lengthText.prefix(40))")
            }
            if let length = Int(lengthText), length < body.count { body = Array(body[..<length]) }
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
            // Not negative (`Int` takes a sign, and a negative size trapped on the slice below), and
            // compared with what is left rather than added to `start`, which overflowed for a huge size.
            guard let size = Int(hex.trimmingCharacters(in: " "), radix: 16), size >= 0 else {
                throw HTTPError(description: "\(address) sent a bad chunk size")
            }
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard size <= bytes.count - start else { throw HTTPError(description: "\(address) cut a chunk short") }
            output += bytes[start..<start + size]
            index = start + size + 2
        }
        return output
    }

    /// A connected, non-blocking socket to `host:port`, trying each address until `deadline`.
    private func connect(host: String, port: String, deadline: UInt64) throws -> Int32 {
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
            let fd = socket(
                entry.pointee.ai_family,
                entry.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { continue }
            if Glibc.connect(fd, entry.pointee.ai_addr, entry.pointee.ai_addrlen) == 0 { return fd }
            var error = errno
            if error == EINPROGRESS {
                do {
                    try wait(fd, for: Int16(POLLOUT), until: deadline)
                } catch let timeout as HTTPError {
                    close(fd)
                    throw HTTPError(description: "cannot connect to \(host):\(port): \(timeout.description)")
                } catch {
                    close(fd)
                    throw error
                }
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error == 0 { return fd }
            }
            lastError = String(cString: strerror(error))
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
