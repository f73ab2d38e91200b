/// The TaskWatch daemon as a library: ingest, registry, exposition and HTTP.
public enum TaskWatchDaemonInfo { public static let version = "0.1.0" }
