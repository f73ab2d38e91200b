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

    /// What to say when connecting to the socket whose `stat` is `info` was refused for lack of
    /// permission: connecting needs write permission on the socket file, which the daemon gives to its
    /// owner and group (`--ingest.socket-mode`, 0660 by default).
    static func permissionAdvice(_ info: stat) -> String {
        let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "gid \(info.st_gid)"
        let mode = "0" + String(info.st_mode & 0o777, radix: 8)
        return "permission denied: this user may not connect (socket mode \(mode), group \(group)); join the "
            + "group \(group), or point --socket or TASKWATCH_SOCKET at a socket this user may use"
    }

    /// The warning `leak` and `stress` print when their reports would go nowhere, or nil. The client
    /// library drops reports silently by design (it must never block the process it watches), so the
    /// tool says it once at start instead.
    static func warning(_ path: String) -> String? {
        guard let error = connectError(path) else { return nil }
        if error == ENOENT || error == ECONNREFUSED {
            return "taskwatch: nothing listens on \(path); reports are dropped until a daemon starts"
        }
        var info = stat()
        if error == EACCES || error == EPERM, stat(path, &info) == 0 {
            return "taskwatch: cannot connect to \(path): \(permissionAdvice(info)); reports are dropped"
        }
        return "taskwatch: cannot connect to \(path): \(String(cString: strerror(error))); reports are dropped"
    }
}
