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

    /// Whether the daemon closed this connection.
    var isClosedByPeer: Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        var truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { tw_recv_message(fd, $0.baseAddress, $0.count, &truncated) }
        return n == 0
    }

    deinit { close(fd) }
}
