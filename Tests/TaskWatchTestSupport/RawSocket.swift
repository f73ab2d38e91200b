import Glibc

/// A connect that failed, with its errno.
public struct ConnectFailure: Error {
    public var code: Int32
}

/// Connects to 127.0.0.1:`port`; returns the socket or the errno of a failed connect. With
/// `receiveBufferBytes`, the receive buffer is set before connecting, when it still sets the window the
/// peer sees: a client that reads nothing then holds the server's response back after a few KiB.
public func connectLoopback(port: UInt16, receiveBufferBytes: Int32? = nil) -> Result<Int32, ConnectFailure> {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    precondition(fd >= 0)
    if var size = receiveBufferBytes {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
    let status = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    if status == 0 { return .success(fd) }
    let code = errno
    close(fd)
    return .failure(ConnectFailure(code: code))
}

/// Sends `request` verbatim and reads until the server closes the connection.
public func rawExchange(port: UInt16, _ request: [UInt8]) throws -> [UInt8] {
    let fd = try connectLoopback(port: port).get()
    defer { close(fd) }
    var sent = 0
    while sent < request.count {
        let count = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        // The server may answer and close before reading everything; what it sent back still counts.
        if count <= 0 { break }
        sent += count
    }
    return readUntilClosed(fd)
}

/// Reads from the connected socket `fd` until the server closes it (or 20 s pass without a byte).
public func readUntilClosed(_ fd: Int32) -> [UInt8] {
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        received += buffer[..<count]
    }
    return received
}
