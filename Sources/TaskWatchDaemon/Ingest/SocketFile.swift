import CTaskWatchSocket
import Glibc

/// Why the ingest socket could not be set up. `description` is meant for the operator, as is.
public struct IngestSocketError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }

    init(_ what: String, errno code: Int32) {
        self.description = "\(what): \(String(cString: strerror(code)))"
    }
}

/// The ingest listening socket: either bound here at a path, or handed over by systemd.
///
/// Only a socket file this process created is ever removed, and only while it is still the same
/// inode: a file someone put there later is left alone.
public struct IngestSocket: Sendable {
    /// The default permission bits of the socket file: owner and group may connect.
    public static let defaultMode: mode_t = 0o660
    /// Large enough that a burst of clients starting together is not refused; the kernel caps it at
    /// `net.core.somaxconn`.
    public static let defaultBacklog: Int32 = 4096

    /// The listening, non-blocking, close-on-exec descriptor.
    public let fd: Int32
    /// The filesystem path, when known (nil for an activated socket without a path name).
    public let path: String?
    /// Whether this process created the socket file, and therefore removes it at shutdown.
    public let ownsFile: Bool
    private let fileIdentity: FileIdentity?
    /// The permission bits and backlog it was bound with, so that `rebound()` binds the same socket.
    private let mode: mode_t
    private let backlog: Int32

    /// Creates, binds and listens on a socket at `path`.
    ///
    /// Creates missing parent directories. A parent that sits in a world-writable directory (such as
    /// `/tmp/taskwatch-$UID`) must be ours and is made 0700, because anyone could have created it first.
    /// An existing socket file is replaced only when connecting to it is refused (a stale file from a
    /// process that died); a live listener or a file that is not a socket is an error and is left alone.
    public static func bind(
        path: String,
        mode: mode_t = IngestSocket.defaultMode,
        backlog: Int32 = IngestSocket.defaultBacklog
    ) throws(IngestSocketError) -> IngestSocket {
        guard !path.isEmpty else { throw IngestSocketError("empty socket path") }
        // sun_path holds 108 bytes including the terminating NUL.
        guard path.utf8.count < 108 else {
            throw IngestSocketError("socket path \(path) is \(path.utf8.count) bytes; the limit is 107")
        }
        try prepareParentDirectory(of: path)
        try removeStaleSocket(at: path)

        let fd = tw_seqpacket_socket()
        guard fd >= 0 else { throw IngestSocketError("cannot create a socket", errno: errno) }
        guard tw_unix_bind(fd, path) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            if code == EADDRINUSE {
                throw IngestSocketError("another taskwatchd is listening on \(path)")
            }
            throw IngestSocketError("cannot bind \(path)", errno: code)
        }
        // From here on the file is ours; undo it if anything below fails.
        let identity = FileIdentity(path: path)
        // Before listen: until then a connect is refused, so the umask-derived mode is never usable. Not
        // chmod(2), which follows a symlink put in the socket's place (`tw_chmod_own_socket`).
        guard tw_chmod_own_socket(path, UInt32(mode)) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            unlink(path)
            throw IngestSocketError("cannot set mode \(String(mode, radix: 8)) on \(path)", errno: code)
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            unlink(path)
            throw IngestSocketError("cannot listen on \(path)", errno: code)
        }
        return IngestSocket(
            fd: fd, path: path, ownsFile: true, fileIdentity: identity, mode: mode, backlog: backlog)
    }

    /// Takes over a socket that is already listening, as systemd socket activation passes it.
    ///
    /// The socket must be `AF_UNIX` `SOCK_SEQPACKET` and listening. It is made non-blocking and
    /// close-on-exec. Its file belongs to systemd, so it is never removed.
    public static func adopt(fd: Int32) throws(IngestSocketError) -> IngestSocket {
        guard tw_socket_domain(fd) == AF_UNIX else {
            throw IngestSocketError("inherited ingest socket fd \(fd) is not an AF_UNIX socket")
        }
        guard tw_socket_type(fd) == Int32(SOCK_SEQPACKET.rawValue) else {
            throw IngestSocketError("inherited ingest socket fd \(fd) is not SOCK_SEQPACKET")
        }
        guard tw_socket_is_listening(fd) == 1 else {
            throw IngestSocketError("inherited ingest socket fd \(fd) is not listening")
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            throw IngestSocketError("cannot configure inherited ingest socket fd \(fd)", errno: errno)
        }
        return IngestSocket(
            fd: fd, path: boundPath(of: fd), ownsFile: false, fileIdentity: nil, mode: 0,
            backlog: IngestSocket.defaultBacklog)
    }

    /// Closes the descriptor and removes the socket file if this process created it and it is still
    /// the same file.
    public func close() {
        _ = Glibc.close(fd)
        removeFile()
    }

    /// Removes the socket file if this process created it and it is still the same file.
    func removeFile() {
        guard ownsFile, let path, let fileIdentity, FileIdentity(path: path) == fileIdentity else { return }
        unlink(path)
    }

    /// Closes the descriptor and leaves the path alone: for a socket whose file is gone, since a file
    /// made there since may have been given the old one's inode number.
    func closeDescriptor() {
        _ = Glibc.close(fd)
    }

    /// What the path of a socket file this process created names now (one `lstat`).
    enum FileState: Equatable, Sendable {
        /// Still the file `bind` created.
        case ours
        /// Nothing: the file, or a directory above it, was removed.
        case missing
        /// Something else, described for a person ("a regular file"): left alone.
        case other(String)
        /// `lstat` failed for another reason than the file being gone.
        case unknown(errno: Int32)
    }

    /// What the path names now compared with the file `bind` created; nil for a socket whose file is
    /// not this process's (adopted from systemd), which is never checked.
    func fileState() -> FileState? {
        guard ownsFile, let path, let fileIdentity else { return nil }
        var status = stat()
        guard lstat(path, &status) == 0 else {
            switch errno {
            case ENOENT: return .missing
            case ENOTDIR: return .other("a file where a directory of the path should be")
            case let code: return .unknown(errno: code)
            }
        }
        if FileIdentity(status) == fileIdentity { return .ours }
        switch status.st_mode & S_IFMT {
        case S_IFSOCK: return .other("another socket")
        case S_IFREG: return .other("a regular file")
        case S_IFDIR: return .other("a directory")
        case S_IFLNK: return .other("a symbolic link")
        default: return .other("a file that is not our socket")
        }
    }

    /// A new socket at the same path, with the same mode and backlog, through all of `bind`'s checks.
    func rebound() throws(IngestSocketError) -> IngestSocket {
        guard ownsFile, let path else { throw IngestSocketError("the ingest socket's file is not ours to bind") }
        return try IngestSocket.bind(path: path, mode: mode, backlog: backlog)
    }

    private init(
        fd: Int32, path: String?, ownsFile: Bool, fileIdentity: FileIdentity?, mode: mode_t, backlog: Int32
    ) {
        self.fd = fd
        self.path = path
        self.ownsFile = ownsFile
        self.fileIdentity = fileIdentity
        self.mode = mode
        self.backlog = backlog
    }

    private static func prepareParentDirectory(of path: String) throws(IngestSocketError) {
        let parent = parentDirectory(of: path)
        if parent == "/" || parent == "." { return }
        let grandparent = parentDirectory(of: parent)
        var grandparentStatus = stat()
        let grandparentExists = stat(grandparent, &grandparentStatus) == 0
        if !grandparentExists {
            try makeDirectories(grandparent)
            grandparentStatus = stat()
            _ = stat(grandparent, &grandparentStatus)
        }
        let shared = grandparentStatus.st_mode & S_IWOTH != 0
        if shared {
            try preparePrivateDirectory(parent)
        } else {
            try makeDirectories(parent)
            try checkTrustedDirectory(parent)
        }
    }

    /// The socket's directory must be ours (or root's), and writable by no one else unless it is sticky
    /// (`/tmp`): whoever can rename entries there can put their own socket in place of ours, or a
    /// symlink for us to follow. A review bound a root daemon into `/run/taskwatch` owned by another
    /// account and took its socket over.
    private static func checkTrustedDirectory(_ directory: String) throws(IngestSocketError) {
        var status = stat()
        guard lstat(directory, &status) == 0 else {
            throw IngestSocketError("cannot inspect directory \(directory)", errno: errno)
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw IngestSocketError("\(directory) is not a directory; refusing to use it")
        }
        guard status.st_uid == geteuid() || status.st_uid == 0 else {
            throw IngestSocketError(
                "\(directory) is owned by uid \(status.st_uid), not by us (uid \(geteuid())) or root; "
                    + "refusing to put the socket there (chown it, or choose another --ingest.socket)")
        }
        if status.st_mode & (S_IWGRP | S_IWOTH) != 0 && status.st_mode & S_ISVTX == 0 {
            throw IngestSocketError(
                "\(directory) is writable by its group or by others (mode "
                    + "\(String(status.st_mode & 0o7777, radix: 8))); refusing to put the socket there")
        }
    }

    /// A directory in a place anyone can write to: someone else may have made it first to intercept
    /// or block our socket, so it must be a real directory, owned by us, and only ours.
    private static func preparePrivateDirectory(_ directory: String) throws(IngestSocketError) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw IngestSocketError("cannot create directory \(directory)", errno: errno)
        }
        var status = stat()
        guard lstat(directory, &status) == 0 else {
            throw IngestSocketError("cannot inspect directory \(directory)", errno: errno)
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw IngestSocketError("\(directory) is not a directory; refusing to use it")
        }
        guard status.st_uid == geteuid() else {
            throw IngestSocketError(
                "\(directory) is owned by uid \(status.st_uid), not by us (uid \(geteuid())); refusing to use it")
        }
        if status.st_mode & 0o777 != 0o700 && chmod(directory, 0o700) != 0 {
            throw IngestSocketError("cannot make \(directory) private", errno: errno)
        }
    }

    /// `mkdir -p` with mode 0755 for what it creates; existing directories keep their mode.
    private static func makeDirectories(_ directory: String) throws(IngestSocketError) {
        var status = stat()
        if stat(directory, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFDIR else {
                throw IngestSocketError("\(directory) exists and is not a directory")
            }
            return
        }
        let parent = parentDirectory(of: directory)
        if parent != directory && parent != "/" && parent != "." { try makeDirectories(parent) }
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw IngestSocketError("cannot create directory \(directory)", errno: errno)
        }
    }

    private static func removeStaleSocket(at path: String) throws(IngestSocketError) {
        var status = stat()
        if lstat(path, &status) != 0 {
            if errno == ENOENT { return }
            throw IngestSocketError("cannot inspect \(path)", errno: errno)
        }
        guard status.st_mode & S_IFMT == S_IFSOCK else {
            throw IngestSocketError("\(path) exists and is not a socket; refusing to replace it")
        }
        let probe = tw_seqpacket_socket()
        guard probe >= 0 else { throw IngestSocketError("cannot create a socket", errno: errno) }
        let result = tw_unix_connect(probe, path)
        let code = errno
        _ = Glibc.close(probe)
        if result == 0 || code == EAGAIN {
            // EAGAIN: a listener whose backlog is full is still a live listener.
            throw IngestSocketError("another taskwatchd is listening on \(path)")
        }
        switch code {
        case ECONNREFUSED:
            // Nobody has it open for listening: a leftover from a process that died.
            guard unlink(path) == 0 || errno == ENOENT else {
                throw IngestSocketError("cannot remove stale socket \(path)", errno: errno)
            }
        case EPROTOTYPE:
            throw IngestSocketError("\(path) is a socket of another type that someone is using; refusing to replace it")
        default:
            throw IngestSocketError("cannot check whether \(path) is in use", errno: code)
        }
    }

    private static func parentDirectory(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        if slash == path.utf8.startIndex { return "/" }
        return String(path[..<slash])
    }

    private static func boundPath(of fd: Int32) -> String? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let pathLength = Int(length) - pathOffset
        guard pathLength > 1 else { return nil }
        return withUnsafeBytes(of: &address.sun_path) { raw in
            let bytes = raw.prefix(pathLength)
            // An abstract name starts with NUL; it has no file to report.
            guard let first = bytes.first, first != 0 else { return nil }
            return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

/// Device and inode: what makes "the file we created" distinguishable from a later file at the path.
private struct FileIdentity: Equatable, Sendable {
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        self.init(status)
    }

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }
}
