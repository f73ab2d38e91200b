import CTaskWatchSocket
import Glibc

/// One-shot probes of the daemon's ingest socket.
enum IngestSocket {
    /// Connects once and closes at once, without a hello, so the daemon lists no client for it. The
    /// socket is non-blocking, so this never waits. Nil when the connection was accepted (or the
    /// backlog was full, which also means a daemon listens), else the errno.
    static func connectError(_ path: String) -> Int32? {
        let fd = tw_seqpacket_socket()
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        if tw_unix_connect(fd, path) == 0 { return nil }
        let error = errno
        return error == EAGAIN ? nil : error
    }

    /// The warning `leak` and `stress` print when their reports would go nowhere, or nil. The client
    /// library drops reports silently by design (it must never block the process it watches), so the
    /// tool says it once at start instead.
    static func warning(_ path: String) -> String? {
        guard let error = connectError(path) else { return nil }
        if error == ENOENT || error == ECONNREFUSED {
            return "taskwatch: nothing listens on \(path); reports are dropped until a daemon starts"
        }
        return "taskwatch: cannot connect to \(path): \(String(cString: strerror(error))); reports are dropped"
    }
}
