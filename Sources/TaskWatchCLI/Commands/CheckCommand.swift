import ArgumentParser
import Glibc
import TaskWatchWire

/// `taskwatch check`: is taskwatchd on this host healthy, and who is connected?
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that taskwatchd runs here: socket, HTTP, version and connected processes.",
        discussion: """
            Exit status: 0 all checks passed; 1 the ingest socket is missing, not a socket or refuses \
            connections; 2 the HTTP endpoint does not answer or is not ready; 3 the metrics path \
            (--path) is unusable; 64 bad arguments; 74 standard output could not be written. When \
            several checks fail, the lowest status is returned.
            """
    )

    @Option(help: socketHelp)
    var socket: String?

    @OptionGroup var endpoint: EndpointOptions

    // Unconditional, so `--timeout -1` reaches validate() instead of reading as an unknown option.
    @Option(parsing: .unconditional, help: "HTTP timeout in milliseconds.")
    var timeout: Int32 = 3_000

    func validate() throws {
        if timeout < 1 { throw ValidationError("--timeout must be at least 1 (milliseconds)") }
        try validateSocketOption(socket)
    }

    func run() throws {
        let path = socket ?? SocketLocation.clientPath(environment: Environment.variables(), uid: getuid())
        var check = HostCheck(
            socketPath: path, client: endpoint.client(timeoutMilliseconds: timeout), metricsPath: endpoint.path)
        check.run()
        for finding in check.findings {
            Terminal.line((finding.ok ? "ok    " : "FAIL  ") + finding.message)
        }
        if check.status != 0 {
            Terminal.line("taskwatch check: failed (exit status \(check.status))", to: STDERR_FILENO)
            throw ExitCode(check.status)
        }
    }
}
