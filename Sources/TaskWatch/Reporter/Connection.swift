import CTaskWatchSocket

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One non-blocking `SOCK_SEQPACKET` connection to the daemon. Used by the reporter thread only.
///
/// Its descriptor number is not its own for good: an app that closes a descriptor it does not own (a
/// `close` done twice) may close this one, and its next `open`, `socket` or `pipe` gets the number. So
/// the socket's identity (device and inode, as `fstat` gives them) is taken at connect and checked
/// before every use: a number that names anything else is the app's now, and is never written to,
/// polled or closed again (`lost`).
final class Connection {
    enum SendResult {
        case sent
        /// The socket buffer is full: the daemon is slow. The connection stays usable.
        case wouldBlock
        /// The daemon went away or refused the frame; the connection must be dropped.
        case broken
        /// The descriptor no longer names this connection's socket: the app closed it and its number
        /// may name one of the app's own files. The connection must be dropped; it closes nothing.
        case lost
    }

    private let fd: Int32
    private let device: UInt64
    private let inode: UInt64
    /// Set once the descriptor was found to name something else: it is not ours to close.
    private var abandoned = false

    /// Connects to the socket at `path`, or returns nil (no daemon, no file, backlog full, no descriptor).
    init?(path: String) {
        // In a world-writable place (the `/tmp/taskwatch-$UID` fallback) the directory must be ours:
        // a review had another user create it first, listen there, and receive this process's reports.
        guard tw_client_directory_trusted(path) == 1 else { return nil }
        let fd = tw_seqpacket_socket()
        guard fd >= 0 else { return nil }
        var status = stat()
        guard fstat(fd, &status) == 0, tw_unix_connect(fd, path) == 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        // A child forked without exec would keep the connection open after this process exits, and the
        // daemon would show it connected until the child ended.
        _ = tw_close_on_fork_add(fd)
    }

    deinit {
        // An abandoned number left the list when it was given up; it may be another connection's now.
        guard !abandoned else { return }
        tw_close_on_fork_remove(fd)
        if isOurs { close(fd) }
    }

    /// Whether the descriptor still names this connection's socket. One `fstat`, a few hundred
    /// nanoseconds: checked before each frame, on the reporter thread only.
    private var isOurs: Bool {
        var status = stat()
        return fstat(fd, &status) == 0 && UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    /// Checks the descriptor; false, and the descriptor given up, when it names something else.
    private func stillOurs() -> Bool {
        if abandoned { return false }
        if isOurs { return true }
        abandoned = true
        tw_close_on_fork_remove(fd)
        return false
    }

    /// Waits up to `milliseconds` for the socket to have room for a frame; true when it has.
    func waitForRoom(milliseconds: Int32) -> Bool {
        guard stillOurs() else { return false }
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0 && descriptor.revents & Int16(POLLOUT) != 0
    }

    /// Sends one frame without blocking and without SIGPIPE.
    func send(_ frame: [UInt8]) -> SendResult {
        guard stillOurs() else { return .lost }
        let sent = frame.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) }
        if sent == frame.count { return .sent }
        if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) {
            return .wouldBlock
        }
        // Closed and reused between the check and the send: not ours either.
        return stillOurs() ? .broken : .lost
    }
}
