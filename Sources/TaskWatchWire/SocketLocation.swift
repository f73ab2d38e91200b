/// Where the ingest socket lives when nobody says otherwise. Pure: the caller passes the environment
/// and uid, so the daemon, the client and the tests agree without touching the filesystem here.
public enum SocketLocation {
    /// The environment variable that overrides the path for clients.
    public static let environmentVariable = "TASKWATCH_SOCKET"

    /// The default ingest socket path: `/run/taskwatch/ingest.sock` for root, otherwise
    /// `$XDG_RUNTIME_DIR/taskwatch/ingest.sock`, else `/tmp/taskwatch-$UID/ingest.sock`.
    public static func defaultPath(environment: [String: String], uid: UInt32) -> String {
        if uid == 0 { return "/run/taskwatch/ingest.sock" }
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") {
            return runtime + "/taskwatch/ingest.sock"
        }
        return "/tmp/taskwatch-\(uid)/ingest.sock"
    }

    /// The path a client connects to: `TASKWATCH_SOCKET` when set and non-empty, else the default.
    public static func clientPath(environment: [String: String], uid: UInt32) -> String {
        if let explicit = environment[environmentVariable], !explicit.isEmpty { return explicit }
        return defaultPath(environment: environment, uid: uid)
    }
}
