import Glibc

/// Why a listen address could not be parsed or opened.
public struct ListenAddressError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// A `--web.listen-address` value: `:10101` (every interface), `127.0.0.1:10101`, `[::1]:10101` or
/// `localhost:10101`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// Where to listen.
    public enum Host: Sendable, Equatable {
        /// Every interface: IPv6 dual-stack where the kernel has IPv6, else IPv4.
        case any
        case ipv4(String)
        case ipv6(String)
        /// A name to resolve, such as `localhost`.
        case name(String)
    }

    public var host: Host
    /// 0 asks the kernel for a free port.
    public var port: UInt16

    public init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `[host]:port`. IPv6 addresses need brackets, so the last colon always starts the port.
    public init(parsing text: String) throws(ListenAddressError) {
        func fail(_ reason: String) -> ListenAddressError {
            ListenAddressError(description: "invalid listen address \"\(text)\": \(reason)")
        }
        guard let colon = text.lastIndex(of: ":") else { throw fail("expected [host]:port, e.g. :10101") }
        let hostPart = text[..<colon]
        let portPart = text[text.index(after: colon)...]
        guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), portPart.allSatisfy(\.isNumber),
            let port = UInt16(portPart)
        else { throw fail("port must be a number from 0 to 65535") }
        self.port = port

        if hostPart.isEmpty {
            host = .any
        } else if hostPart.hasPrefix("[") {
            guard hostPart.hasSuffix("]"), hostPart.count > 2 else { throw fail("unbalanced brackets") }
            let inner = String(hostPart.dropFirst().dropLast())
            guard Self.isIPv6(inner) else { throw fail("\"\(inner)\" is not an IPv6 address") }
            host = .ipv6(inner)
        } else if hostPart.contains(":") {
            throw fail("an IPv6 address needs brackets, e.g. [::1]:10101")
        } else if Self.isIPv4(String(hostPart)) {
            host = .ipv4(String(hostPart))
        } else if hostPart.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) {
            host = .name(String(hostPart))
        } else {
            throw fail("\"\(hostPart)\" is not a host name or IP address")
        }
    }

    public var description: String {
        switch host {
        case .any: ":\(port)"
        case .ipv4(let address), .name(let address): "\(address):\(port)"
        case .ipv6(let address): "[\(address)]:\(port)"
        }
    }

    /// Opens a TCP socket, binds it with `SO_REUSEADDR` and listens. Returns the descriptor, which is
    /// close-on-exec and non-blocking, ready for `HTTPServer.Options.listeningSockets`.
    public func openListeningSocket(backlog: Int32 = 1024) throws(ListenAddressError) -> Int32 {
        let endpoint: Endpoint
        switch host {
        case .any:
            // Fall back to IPv4 only when the kernel has no IPv6 at all, never on "address in use".
            do throws(Failure) {
                return try Self.listen(
                    on: .ipv6(in6addr_any, dualStack: true), port: port, backlog: backlog, shown: description)
            } catch  where error.errorNumber == EAFNOSUPPORT || error.errorNumber == EADDRNOTAVAIL {
                endpoint = .ipv4(in_addr(s_addr: INADDR_ANY))
            } catch {
                throw error.rethrown
            }
        case .ipv4(let text):
            var address = in_addr()
            guard inet_pton(AF_INET, text, &address) == 1 else { throw invalid(text) }
            endpoint = .ipv4(address)
        case .ipv6(let text):
            var address = in6_addr()
            guard inet_pton(AF_INET6, text, &address) == 1 else { throw invalid(text) }
            // Only the wildcard listens for IPv4 too, as with the Go listeners users know.
            let wildcard = withUnsafeBytes(of: address) { $0.allSatisfy { $0 == 0 } }
            endpoint = .ipv6(address, dualStack: wildcard)
        case .name(let name):
            do throws(Failure) { endpoint = try Self.resolve(name) } catch { throw error.rethrown }
        }
        do throws(Failure) {
            return try Self.listen(on: endpoint, port: port, backlog: backlog, shown: description)
        } catch {
            throw error.rethrown
        }
    }

    /// Validates a descriptor handed over by systemd socket activation (`LISTEN_FDS`): it must be a
    /// listening TCP socket. Returns it non-blocking and close-on-exec.
    public static func adoptListeningSocket(_ fd: Int32) throws(ListenAddressError) -> Int32 {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard let type = option(SO_TYPE) else {
            throw ListenAddressError(description: "inherited descriptor \(fd) is not a socket: \(errorText(errno))")
        }
        guard type == Int32(SOCK_STREAM.rawValue), let domain = option(SO_DOMAIN),
            domain == AF_INET || domain == AF_INET6
        else { throw ListenAddressError(description: "inherited descriptor \(fd) is not a TCP socket") }
        guard option(SO_ACCEPTCONN) == 1 else {
            throw ListenAddressError(description: "inherited socket \(fd) is not listening")
        }
        let status = fcntl(fd, F_GETFL)
        guard status >= 0, fcntl(fd, F_SETFL, status | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            throw ListenAddressError(description: "cannot configure inherited socket \(fd): \(errorText(errno))")
        }
        return fd
    }

    /// The port a socket is bound to; useful after binding port 0.
    public static func boundPort(of fd: Int32) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET: return withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.load(as: sockaddr_in.self).sin_port) }
        case AF_INET6:
            return withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.load(as: sockaddr_in6.self).sin6_port) }
        default: return nil
        }
    }

    private func invalid(_ text: String) -> ListenAddressError {
        ListenAddressError(description: "invalid listen address \"\(description)\": bad IP address \"\(text)\"")
    }

    private enum Endpoint {
        case ipv4(in_addr)
        case ipv6(in6_addr, dualStack: Bool)
    }

    /// Keeps errno next to the message so `openListeningSocket` can decide on the IPv4 fallback.
    private struct Failure: Error {
        var errorNumber: Int32
        var message: String
        var rethrown: ListenAddressError { ListenAddressError(description: message) }
    }

    private static func listen(
        on endpoint: Endpoint, port: UInt16, backlog: Int32, shown: String
    ) throws(Failure) -> Int32 {
        func failure(_ step: String) -> Failure {
            let code = errno
            let hint = code == EADDRINUSE ? " (is another taskwatchd or exporter running?)" : ""
            return Failure(errorNumber: code, message: "cannot listen on \(shown): \(step): \(errorText(code))\(hint)")
        }
        let family =
            switch endpoint {
            case .ipv4: AF_INET
            case .ipv6: AF_INET6
            }
        let fd = socket(
            family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw failure("socket") }
        var one: Int32 = 1
        var zero: Int32 = 0
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            let error = failure("SO_REUSEADDR")
            close(fd)
            throw error
        }
        let bound: Int32
        switch endpoint {
        case .ipv4(let address):
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = port.bigEndian
            socketAddress.sin_addr = address
            bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .ipv6(let address, let dualStack):
            if dualStack {
                // Explicit, because the default follows the net.ipv6.bindv6only sysctl.
                _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
            }
            var socketAddress = sockaddr_in6()
            socketAddress.sin6_family = sa_family_t(AF_INET6)
            socketAddress.sin6_port = port.bigEndian
            socketAddress.sin6_addr = address
            bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        guard bound == 0 else {
            let error = failure("bind")
            close(fd)
            throw error
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let error = failure("listen")
            close(fd)
            throw error
        }
        return fd
    }

    /// Resolves a name the way Go's listeners do: the first IPv4 address, else the first IPv6 one.
    private static func resolve(_ name: String) throws(Failure) -> Endpoint {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, nil, &hints, &list)
        guard status == 0, let list else {
            let reason = status == 0 ? "no addresses" : String(cString: gai_strerror(status))
            throw Failure(errorNumber: 0, message: "cannot resolve listen host \"\(name)\": \(reason)")
        }
        defer { freeaddrinfo(list) }
        var ipv6: Endpoint?
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry?.pointee {
            if current.ai_family == AF_INET, let address = current.ai_addr {
                let ipv4 = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self).sin_addr
                return .ipv4(ipv4)
            }
            if current.ai_family == AF_INET6, ipv6 == nil, let address = current.ai_addr {
                ipv6 = .ipv6(UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self).sin6_addr, dualStack: false)
            }
            entry = current.ai_next
        }
        guard let ipv6 else {
            throw Failure(errorNumber: 0, message: "cannot resolve listen host \"\(name)\": no IP address")
        }
        return ipv6
    }

    private static func isIPv4(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    private static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }
}

private func errorText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
