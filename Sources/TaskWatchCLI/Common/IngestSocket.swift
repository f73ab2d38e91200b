import CTaskWatchSocket
import Glibc

/// One-shot probes of the daemon's ingest socket.
enum IngestSocket {
    /// What connecting once found.
    enum Probe: Equatable {
        /// Connected, and the daemon kept the connection (or the backlog was full, which also means a
        /// daemon listens).
        case accepted
        /// Connected, and the daemon closed the connection at once: it refuses this peer at accept.
        case closedByDaemon
        /// The connect failed with this errno.
        case failed(Int32)
    }

    /// How long a probe waits for the daemon to close a connection it refuses. It decides at accept,
    /// within a few milliseconds of the connect; `connect` itself succeeds before that, once the
    /// connection is in the listen backlog.
    static let refusalWaitMilliseconds: Int32 = 200

    /// Connects once and closes, without a hello, so the daemon lists no client for it; waits up to
    /// `refusalWaitMilliseconds` to see whether the daemon closes the connection first.
    static func probe(_ path: String) -> Probe {
        let fd = tw_seqpacket_socket()
        guard fd >= 0 else { return .failed(errno) }
        defer { close(fd) }
        guard tw_unix_connect(fd, path) == 0 else {
            let error = errno
            return error == EAGAIN ? .accepted : .failed(error)
        }
        return peerClosed(fd, waitMilliseconds: refusalWaitMilliseconds) ? .closedByDaemon : .accepted
    }

    /// Whether the peer of connected socket `fd` has closed it, waiting up to `waitMilliseconds` for it
    /// to. The daemon never writes to a client, so anything readable is the end of the connection.
    static func peerClosed(_ fd: Int32, waitMilliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&descriptor, 1, waitMilliseconds)
            if ready < 0 && errno == EINTR { continue }
            return ready > 0 && descriptor.revents != 0
        }
    }

    /// What to say when the daemon closed a connection at once, before any hello: each check the daemon
    /// makes at accept (`not_allowed`, `max_clients`, `uid_limit`, and `unknown_pid` for a peer whose pid
    /// the kernel gives the daemon as 0), which its counter and log name.
    static func refusalAdvice(_ path: String) -> String {
        "taskwatchd at \(path) closed the connection at once: it refuses this process (uid \(getuid())): its "
            + "uid or groups are not in --ingest.allowed-uids/--ingest.allowed-gids, --ingest.max-clients or "
            + "--ingest.max-clients-per-uid is reached, or this process is outside the daemon's pid namespace "
            + "(run taskwatchd in the host's: hostPID, --pid=host); taskwatch_clients_rejected_total{reason} "
            + "and the daemon's log (\"Ingest client rejected\") say which"
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

    /// What `path` is when it exists and is not a socket (`a directory`, `a regular file`, …), or nil.
    /// Connecting to one fails with ECONNREFUSED, as to a socket nobody listens on, which said
    /// "nothing listens" of a directory given by mistake.
    static func nonSocketKind(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK: return nil
        case S_IFDIR: return "a directory"
        case S_IFREG: return "a regular file"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR, S_IFBLK: return "a device"
        default: return "a special file"
        }
    }

    /// Why connecting to `path` failed with `error`, in words: its kind when it is no socket at all.
    static func connectFailure(_ path: String, _ error: Int32) -> String {
        nonSocketKind(path).map { "it is \($0), not a socket" } ?? String(cString: strerror(error))
    }

    /// The warning `leak` and `stress` print when their reports would go nowhere, or nil. The client
    /// library drops reports silently by design (it must never block the process it watches), so the
    /// tool says it once at start instead.
    static func warning(_ path: String) -> String? {
        let error: Int32
        switch probe(path) {
        case .accepted: return nil
        case .closedByDaemon: return "taskwatch: \(refusalAdvice(path)); reports are dropped"
        case .failed(let errno): error = errno
        }
        if let kind = nonSocketKind(path) {
            return "taskwatch: cannot connect to \(path): it is \(kind), not a socket; reports are dropped"
        }
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
