import Glibc
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

@Suite struct ListenAddressParsingTests {
    @Test(arguments: [
        (":10101", ListenAddress(host: .any, port: 10101)),
        ("127.0.0.1:10101", ListenAddress(host: .ipv4("127.0.0.1"), port: 10101)),
        ("0.0.0.0:80", ListenAddress(host: .ipv4("0.0.0.0"), port: 80)),
        ("[::1]:10101", ListenAddress(host: .ipv6("::1"), port: 10101)),
        ("[::]:0", ListenAddress(host: .ipv6("::"), port: 0)),
        ("[fe80::1:2]:65535", ListenAddress(host: .ipv6("fe80::1:2"), port: 65535)),
        ("localhost:10101", ListenAddress(host: .name("localhost"), port: 10101)),
        ("metrics.example-1.internal:9", ListenAddress(host: .name("metrics.example-1.internal"), port: 9)),
    ])
    func parses(_ text: String, _ expected: ListenAddress) throws {
        let address = try ListenAddress(parsing: text)
        #expect(address == expected)
        #expect(address.description == text)
    }

    @Test(arguments: [
        "", "10101", ":", "localhost", "localhost:", ":65536", ":-1", ":+80", ":80a", ": 80", ":８０", "::1:10101",
        "[::1:10101", "::1]:10101", "[]:80", "[127.0.0.1]:80", "[::g]:80", "host name:80", "a/b:80", "ünï:80",
        "[::1]x:80",
    ])
    func rejects(_ text: String) {
        let error = #expect(throws: ListenAddressError.self) { try ListenAddress(parsing: text) }
        #expect(error?.description.contains("invalid listen address") == true)
    }
}

@Suite struct ListenAddressSocketTests {
    @Test(arguments: ["127.0.0.1:0", "localhost:0", ":0"])
    func opensAListeningSocket(_ text: String) throws {
        let fd = try ListenAddress(parsing: text).openListeningSocket()
        defer { close(fd) }
        let port = try #require(ListenAddress.boundPort(of: fd))
        #expect(port != 0)
        // Every form here is reachable over IPv4 loopback, the dual-stack wildcard included.
        let client = try connectLoopback(port: port).get()
        close(client)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func opensIPv6LoopbackWhenAvailable() throws {
        let probe = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        try #require(probe >= 0, "no IPv6 on this machine")
        close(probe)
        let fd: Int32
        do {
            fd = try ListenAddress(parsing: "[::1]:0").openListeningSocket()
        } catch {
            // Containers often have the IPv6 family without a ::1 address.
            #expect(error.description.contains("Cannot assign requested address"))
            return
        }
        defer { close(fd) }
        #expect(ListenAddress.boundPort(of: fd) != 0)
    }

    @Test func portInUseIsAClearError() throws {
        let first = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        defer { close(first) }
        let port = try #require(ListenAddress.boundPort(of: first))
        let error = #expect(throws: ListenAddressError.self) {
            try ListenAddress(parsing: "127.0.0.1:\(port)").openListeningSocket()
        }
        #expect(error?.description.contains("127.0.0.1:\(port)") == true)
        #expect(error?.description.contains("Address already in use") == true)
    }

    @Test func unresolvableNameIsAClearError() {
        let error = #expect(throws: ListenAddressError.self) {
            try ListenAddress(parsing: "no-such-host.invalid:0").openListeningSocket()
        }
        #expect(error?.description.contains("no-such-host.invalid") == true)
    }

    @Test func adoptsAListeningSocket() throws {
        let fd = try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket()
        defer { close(fd) }
        // Inherited sockets come blocking and without close-on-exec.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, 0)
        #expect(try ListenAddress.adoptListeningSocket(fd) == fd)
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func refusesToAdoptOtherDescriptors() throws {
        var pipeEnds: [Int32] = [0, 0]
        try #require(pipe(&pipeEnds) == 0)
        defer { pipeEnds.forEach { close($0) } }
        #expect(throws: ListenAddressError.self) { try ListenAddress.adoptListeningSocket(pipeEnds[0]) }

        let unbound = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(unbound) }
        let error = #expect(throws: ListenAddressError.self) { try ListenAddress.adoptListeningSocket(unbound) }
        #expect(error?.description.contains("not listening") == true)

        let datagram = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(datagram) }
        #expect(throws: ListenAddressError.self) { try ListenAddress.adoptListeningSocket(datagram) }

        #expect(throws: ListenAddressError.self) { try ListenAddress.adoptListeningSocket(-1) }
    }

    @Test func adoptedSocketServes() throws {
        let fd = try ListenAddress.adoptListeningSocket(try ListenAddress(parsing: "127.0.0.1:0").openListeningSocket())
        let port = try #require(ListenAddress.boundPort(of: fd))
        let server = try HTTPServer(options: .init(listeningSockets: [fd])) { _ in HTTPResponse(status: 204) }
        defer { server.stop() }
        #expect(try curl("http://127.0.0.1:\(port)/").status == 204)
    }
}
