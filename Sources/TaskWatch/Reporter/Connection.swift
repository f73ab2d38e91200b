import CTaskWatchSocket

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One non-blocking `SOCK_SEQPACKET` connection to the daemon. Used by the reporter thread only.
final class Connection {
    enum SendResult {
        case sent
        /// The socket buffer is full: the daemon is slow. The connection stays usable.
        case wouldBlock
        /// The daemon went away or refused the frame; the connection must be dropped.
        case broken
    }

    private let fd: Int32

    /// Connects to the socket at `path`, or returns nil (no daemon, no file, backlog full).
    init?(path: String) {
        // In a world-writable place (the `/tmp/taskwatch-$UID` fallback) the directory must be ours:
        // a review had another user create it first, listen there, and receive this process's reports.
        guard tw_client_directory_trusted(path) == 1 else { return nil }
        let fd = tw_seqpacket_socket()
        guard fd >= 0 else { return nil }
        guard tw_unix_connect(fd, path) == 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
        // A child forked without exec would keep the connection open after this process exits, and the
        // daemon would show it connected until the child ended.
        _ = tw_close_on_fork_add(fd)
    }

    deinit {
        tw_close_on_fork_remove(fd)
        close(fd)
    }

    /// Waits up to `milliseconds` for the socket to have room for a frame; true when it has.
    func waitForRoom(milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0 && descriptor.revents & Int16(POLLOUT) != 0
    }

    /// Sends one frame without blocking and without SIGPIPE.
    func send(_ frame: [UInt8]) -> SendResult {
        let sent = frame.withUnsafeBytes { tw_send_message(fd, $0.baseAddress, $0.count) }
        if sent == frame.count { return .sent }
        if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) {
            return .wouldBlock
        }
        return .broken
    }
}
