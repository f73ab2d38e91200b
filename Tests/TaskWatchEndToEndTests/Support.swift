import CTaskWatchSocket
import Foundation
import TaskWatchTestSupport
import TaskWatchWire

/// A `taskwatch send` child process.
final class SenderProcess {
    let child: ChildProcess

    init(socket: String, arguments: [String]) throws {
        child = try ChildProcess(builtExecutable("taskwatch"), ["send", "--socket", socket] + arguments)
    }

    var pid: Int32 { child.pid }

    func wait() -> Int32 { child.waitOrKill() }
}

/// A connection from the test process itself, for sending exact bytes.
final class RawClient {
    let fd: Int32

    init(path: String) throws {
        fd = tw_seqpacket_socket()
        guard fd >= 0, tw_unix_connect(fd, path) == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    func send(_ frame: Frame) {
        for bytes in FrameEncoder.encode(frame) { send(bytes) }
    }

    /// Sends `frame` (one message) with `descriptors` attached as `SCM_RIGHTS`, as a hostile client
    /// could. The control message is laid out by hand: Swift does not import the `CMSG_*` macros.
    @discardableResult
    func send(_ frame: Frame, passing descriptors: [Int32]) -> Bool {
        let bytes = FrameEncoder.encode(frame)[0]
        let header = MemoryLayout<cmsghdr>.size  // CMSG_LEN(0): 16 on 64-bit Linux
        let payload = descriptors.count * MemoryLayout<Int32>.size
        var control = [UInt8](repeating: 0, count: header + (payload + 7) / 8 * 8)  // CMSG_SPACE
        control.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: header + payload, toByteOffset: 0, as: Int.self)  // cmsg_len
            raw.storeBytes(of: SOL_SOCKET, toByteOffset: 8, as: Int32.self)  // cmsg_level
            raw.storeBytes(of: Int32(SCM_RIGHTS), toByteOffset: 12, as: Int32.self)  // cmsg_type
            for (index, fd) in descriptors.enumerated() {
                raw.storeBytes(of: fd, toByteOffset: header + index * 4, as: Int32.self)
            }
        }
        return bytes.withUnsafeBytes { body in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress), iov_len: body.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    // The socket is non-blocking, and the kernel caps descriptors in flight per user
                    // (ETOOMANYREFS): wait for the daemon to read, up to 5 s.
                    for _ in 0..<5_000 {
                        if sendmsg(fd, &message, Int32(MSG_NOSIGNAL)) == body.count { return true }
                        guard errno == EAGAIN || errno == ETOOMANYREFS || errno == EINTR else { return false }
                        usleep(1_000)
                    }
                    return false
                }
            }
        }
    }

    /// Whether the daemon closed this connection.
    var isClosedByPeer: Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        var truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { tw_recv_message(fd, $0.baseAddress, $0.count, &truncated) }
        return n == 0
    }

    deinit { close(fd) }
}
