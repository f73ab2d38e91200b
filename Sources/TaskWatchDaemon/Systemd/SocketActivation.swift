import CTaskWatchSocket
import Glibc

/// Sockets passed by systemd socket activation (`LISTEN_FDS`), as `sd_listen_fds_with_names(3)` reads
/// them, without linking libsystemd.
public enum SocketActivation {
    /// The first passed descriptor; the rest follow without gaps.
    public static let firstDescriptor: Int32 = 3
    /// The environment variables this type reads, and removes from the process environment.
    public static let environmentKeys = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]

    /// What a passed socket is for.
    public enum Role: Sendable, Equatable {
        /// The ingest socket: `AF_UNIX` `SOCK_SEQPACKET`, or named `ingest` in the unit.
        case ingest
        /// An HTTP listener: any other stream socket.
        case http
        /// Neither; the daemon should say so and ignore it.
        case unknown
    }

    /// One passed descriptor.
    public struct PassedSocket: Sendable, Equatable {
        public var fd: Int32
        /// The unit's `FileDescriptorName=`; systemd's default is the socket unit's name.
        public var name: String
        public var role: Role

        public init(fd: Int32, name: String, role: Role) {
            self.fd = fd
            self.name = name
            self.role = role
        }
    }

    /// Why the activation variables could not be used.
    public struct ActivationError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// The descriptors and names the environment describes; empty when nothing was passed or the
    /// variables are meant for another process (`LISTEN_PID` is not `pid`). Classifies nothing and
    /// touches no descriptor.
    public static func descriptors(
        environment: [String: String],
        pid: Int32
    ) throws(ActivationError) -> [(fd: Int32, name: String)] {
        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return [] }
        guard let listenPID = Int32(pidText) else {
            throw ActivationError(description: "LISTEN_PID=\(pidText) is not a process id")
        }
        guard listenPID == pid else { return [] }
        guard let count = Int32(countText), count >= 0, count <= Int32.max - firstDescriptor else {
            throw ActivationError(description: "LISTEN_FDS=\(countText) is not a descriptor count")
        }
        var names = (environment["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false)
            .map(String.init)
        // systemd always passes one name per descriptor; without names, "unknown" is what
        // sd_listen_fds_with_names reports too.
        if names.count != Int(count) { names = Array(repeating: "unknown", count: Int(count)) }
        return (0..<count).map { (firstDescriptor + $0, names[Int($0)]) }
    }

    /// Decides what a descriptor is for from its name and socket type.
    public static func role(of fd: Int32, name: String) -> Role {
        // The socket's type decides, not its name: nested launchers such as systemd-socket-activate
        // pass one name for every descriptor.
        let type = tw_socket_type(fd)
        if type == Int32(SOCK_SEQPACKET.rawValue) && tw_socket_domain(fd) == AF_UNIX { return .ingest }
        if type == Int32(SOCK_STREAM.rawValue) && tw_socket_domain(fd) != AF_UNIX { return .http }
        // Anything else named "ingest" is meant as ingest; adopting it explains what is wrong with it.
        if name == "ingest" { return .ingest }
        if type == Int32(SOCK_STREAM.rawValue) { return .http }
        return .unknown
    }

    /// Reads the sockets from `environment`, marks each close-on-exec so children never inherit them,
    /// and classifies them.
    public static func sockets(environment: [String: String], pid: Int32) throws(ActivationError) -> [PassedSocket] {
        try classify(descriptors(environment: environment, pid: pid))
    }

    /// Marks each descriptor close-on-exec and decides its role. Fails for a descriptor that is not open.
    public static func classify(_ descriptors: [(fd: Int32, name: String)]) throws(ActivationError) -> [PassedSocket] {
        var sockets: [PassedSocket] = []
        for (fd, name) in descriptors {
            guard fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
                throw ActivationError(
                    description: "passed fd \(fd) (\(name)) is not usable: \(String(cString: strerror(errno)))")
            }
            sockets.append(PassedSocket(fd: fd, name: name, role: role(of: fd, name: name)))
        }
        return sockets
    }

    /// Reads the sockets passed to this process and removes the activation variables from its
    /// environment, so a child process never mistakes them for its own. Call once, early, before any
    /// other thread reads the environment (`unsetenv` is not thread-safe).
    public static func takeFromProcessEnvironment() throws(ActivationError) -> [PassedSocket] {
        var environment: [String: String] = [:]
        for key in environmentKeys {
            if let value = getenv(key) { environment[key] = String(cString: value) }
        }
        defer { for key in environmentKeys { unsetenv(key) } }
        return try sockets(environment: environment, pid: getpid())
    }
}
