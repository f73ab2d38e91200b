import CTaskWatchSocket
import Glibc

/// Tells systemd about the daemon's state, as `sd_notify(3)` does, without linking libsystemd.
///
/// Every call is a no-op when the service manager did not set `NOTIFY_SOCKET` (the daemon was not
/// started by systemd with `Type=notify`), so the daemon calls these unconditionally.
public struct SystemdNotifier: Sendable {
    /// The environment variables this type reads.
    public static let environmentKeys = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]

    /// Where notifications go: a filesystem path, or an abstract name starting with `@`. Nil disables.
    public let socketAddress: String?
    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as systemd recommends, so one late
    /// ping is not fatal. Nil when the watchdog is off or meant for another process.
    public let watchdogPingInterval: Duration?

    /// Reads the configuration from `environment`. `WATCHDOG_PID`, when set, must equal `pid`:
    /// otherwise the watchdog belongs to another process (a parent that forked us).
    public init(environment: [String: String], pid: Int32 = getpid()) {
        if let address = environment["NOTIFY_SOCKET"], address.hasPrefix("/") || address.hasPrefix("@"),
            address.utf8.count >= 2
        {
            socketAddress = address
        } else {
            socketAddress = nil
        }
        watchdogPingInterval = Self.watchdogInterval(environment: environment, pid: pid)
    }

    /// Reads the configuration from the process environment.
    public static func fromProcessEnvironment() -> SystemdNotifier {
        var environment: [String: String] = [:]
        for key in environmentKeys {
            if let value = getenv(key) { environment[key] = String(cString: value) }
        }
        return SystemdNotifier(environment: environment)
    }

    /// Whether notifications are sent anywhere.
    public var isEnabled: Bool { socketAddress != nil }

    /// Startup finished: the ingest socket and the HTTP listener are accepting.
    @discardableResult public func ready() -> Bool { notify("READY=1") }

    /// Shutdown began.
    @discardableResult public func stopping() -> Bool { notify("STOPPING=1") }

    /// The daemon is alive; send every `watchdogPingInterval`.
    @discardableResult public func watchdog() -> Bool { notify("WATCHDOG=1") }

    /// A one-line status shown by `systemctl status`.
    @discardableResult public func status(_ text: String) -> Bool {
        notify("STATUS=" + text.split(whereSeparator: \.isNewline).joined(separator: " "))
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments) as one datagram. Returns false when
    /// disabled or when sending failed; failures are not fatal, since systemd may simply not care.
    @discardableResult public func notify(_ state: String) -> Bool {
        guard let socketAddress else { return false }
        var message = Array(state.utf8)
        var address = Array(socketAddress.utf8)
        address.append(0)
        return message.withUnsafeMutableBytes { payload in
            address.withUnsafeBufferPointer { path in
                path.baseAddress!.withMemoryRebound(to: CChar.self, capacity: path.count) {
                    tw_unix_send_datagram($0, path.count - 1, payload.baseAddress, payload.count) == 0
                }
            }
        }
    }

    private static func watchdogInterval(environment: [String: String], pid: Int32) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = UInt64(text), microseconds > 0 else {
            return nil
        }
        if let owner = environment["WATCHDOG_PID"], !owner.isEmpty {
            guard let ownerPID = Int32(owner), ownerPID == pid else { return nil }
        }
        return .microseconds(microseconds / 2)
    }
}
