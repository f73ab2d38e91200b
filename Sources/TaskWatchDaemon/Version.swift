/// Facts about this build of the daemon.
public enum TaskWatchDaemonInfo {
    public static let version = "0.1.0"
    /// The source revision. SwiftPM has no way to stamp a string at build time without a plugin, so
    /// release packaging is expected to replace this; development builds say so.
    public static let revision = "dev"

    /// The compiler that built this binary, for `taskwatch_build_info`.
    public static let swiftVersion: String = {
        #if compiler(>=6.4)
            return "6.4"
        #elseif compiler(>=6.3)
            return "6.3"
        #elseif compiler(>=6.2)
            return "6.2"
        #else
            return "6.1"
        #endif
    }()
}
