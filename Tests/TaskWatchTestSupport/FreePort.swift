import Glibc

/// The bind or getsockname of `freePort()` failed.
public struct FreePortError: Error, CustomStringConvertible {
    public let description: String
}

/// A loopback TCP port nobody listened on a moment ago (the kernel's pick for port 0).
public func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FreePortError(description: "socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw FreePortError(description: "bind: \(String(cString: strerror(errno)))") }
    return UInt16(bigEndian: address.sin_port)
}
