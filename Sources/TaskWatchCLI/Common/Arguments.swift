import ArgumentParser
import TaskWatchWire

/// A duration option such as `--hold 2s`. Parsed while the arguments are, so a bad value is a usage
/// error (exit 64, the subcommand's usage) like any other, and `--help` shows the default as written.
struct DurationArgument: ExpressibleByArgument, Sendable, Equatable {
    /// The value as the user wrote it, e.g. `500ms`.
    var text: String
    var nanoseconds: UInt64

    init?(argument: String) {
        guard let nanoseconds = DurationText.nanoseconds(argument) else { return nil }
        self.text = argument
        self.nanoseconds = nanoseconds
    }

    var defaultValueDescription: String { text }

    /// `text` as a default value; it is a literal, so a typo fails every test at once.
    static func literal(_ text: String) -> DurationArgument { DurationArgument(argument: text)! }
}

/// What the help of every `--socket` option says: how the default path is chosen (SocketLocation).
let socketHelp = ArgumentHelp(
    "Ingest socket path (default: $TASKWATCH_SOCKET, else /run/taskwatch/ingest.sock for root, else "
        + "$XDG_RUNTIME_DIR/taskwatch/ingest.sock, else /tmp/taskwatch-$UID/ingest.sock).",
    valueName: "path")

/// Refuses an empty `--socket`, which would otherwise fail later as a path too long or missing.
func validateSocketOption(_ socket: String?) throws {
    if socket?.isEmpty == true { throw ValidationError("--socket must not be empty") }
}

/// Refuses an empty `--process`: the series would carry `process=""`, which says nothing.
func validateProcessOption(_ process: String?) throws {
    if process?.isEmpty == true { throw ValidationError("--process must not be empty") }
}

/// The environment variable that holds the password for `--basic-auth-user`. Never a flag, so the
/// password does not show in `ps` or the shell's history.
let basicAuthPasswordVariable = "TASKWATCH_BASIC_AUTH_PASSWORD"

/// How `top` and `check` reach the daemon's HTTP endpoint.
struct EndpointOptions: ParsableArguments {
    @Option(help: "The daemon's HTTP address, host:port (plain HTTP; TLS listeners are not supported).")
    var address = "localhost:10101"

    @Option(help: "The metrics path: the daemon's --web.telemetry-path.")
    var path = "/metrics"

    @Option(
        help: ArgumentHelp(
            "Send basic auth as this user; the password comes from $\(basicAuthPasswordVariable).",
            valueName: "user"))
    var basicAuthUser: String?

    func validate() throws {
        if !path.hasPrefix("/") { throw ValidationError("--path must begin with /: \(path)") }
        // getaddrinfo takes a numeric port modulo 65536: `:99999` read whatever listened on 34463.
        let port = HTTPClient.split(address).port
        guard port.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let number = Int(port), (1...65_535).contains(number)
        else { throw ValidationError("--address must end in a port from 1 to 65535: \(address)") }
        if let basicAuthUser {
            if basicAuthUser.contains(":") { throw ValidationError("--basic-auth-user must not contain ':'") }
            if Environment.variables()[basicAuthPasswordVariable] == nil {
                throw ValidationError("--basic-auth-user needs the password in \(basicAuthPasswordVariable)")
            }
        }
    }

    /// A client for the endpoint, with credentials when `--basic-auth-user` is given.
    func client(timeoutMilliseconds: Int32 = 5_000) -> HTTPClient {
        var client = HTTPClient(address: address, timeoutMilliseconds: timeoutMilliseconds)
        if let basicAuthUser {
            let password = Environment.variables()[basicAuthPasswordVariable] ?? ""
            client.authorization = HTTPClient.basicAuthorization(user: basicAuthUser, password: password)
        }
        return client
    }
}
