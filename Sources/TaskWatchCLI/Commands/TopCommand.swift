import ArgumentParser
import Glibc

extension TopSort: ExpressibleByArgument {}

/// `taskwatch top`: a live view of the daemon's clients, read over HTTP.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Show the daemon's clients live: tasks, rates, memory, executor lag and report age.",
        discussion: """
            Rates come from two scrapes --interval apart. AGE is the time since the daemon accepted the \
            process's last report, against this host's clock. On a terminal the view redraws in place \
            until interrupted, cut to the terminal's width and height (the rows left out are counted); \
            otherwise a plain table is printed every interval. A scrape that fails is \
            reported (in the view, or on stderr) and tried again at the next interval; a process first \
            seen in the latest scrape has no rates yet. --once prints one table (after one interval, for \
            the rates) and exits. Exit status: 0 done; 1 the metrics could not be read (--once); 64 bad \
            arguments; 74 standard output could not be written.
            """
    )

    @OptionGroup var endpoint: EndpointOptions

    @Option(parsing: .unconditional, help: "Refresh interval, e.g. 500ms or 2s.")
    var interval = DurationArgument.literal("2s")

    @Option(help: "The column to sort by; age puts the longest-silent processes first.")
    var sort: TopSort = .live

    @Flag(help: "Print one table and exit.")
    var once = false

    // Unconditional, so `--limit -1` reaches validate() instead of reading as an unknown option.
    @Option(parsing: .unconditional, help: "Show at most this many rows (0: all).")
    var limit = 0

    func validate() throws {
        if interval.nanoseconds == 0 { throw ValidationError("--interval must be above 0") }
        if limit < 0 { throw ValidationError("--limit must not be negative") }
    }

    func run() async throws {
        let client = endpoint.client()
        StopSignal.install()
        let terminal = !once && Terminal.isTerminal(STDOUT_FILENO)
        var previous: MetricsSnapshot?
        do {
            while true {
                do {
                    let current = try scrape(client)
                    if let previous {
                        show(previous: previous, current: current, terminal: terminal)
                        if once { return }
                    }
                    previous = current
                } catch let error as HTTPError where !once {
                    // A live view outlasts a daemon restart or a slow scrape: say what failed and try again
                    // at the next tick. Rates then span the gap, from the last scrape that worked.
                    showFailure(error, terminal: terminal)
                }
                await Self.sleep(interval.nanoseconds)
                if StopSignal.isRequested { return }
            }
        } catch let error as HTTPError {
            Terminal.line("taskwatch top: \(error.description)", to: STDERR_FILENO)
            throw ExitCode.failure
        } catch is StopRequested {
            // Interrupted in the middle of a scrape: a stop like any other.
        }
    }

    private func header(_ clients: String) -> String {
        "taskwatchd \(endpoint.address): \(clients) clients"
    }

    private func show(previous: MetricsSnapshot, current: MetricsSnapshot, terminal: Bool) {
        var rows = ClientTable.sorted(ClientTable.rows(previous: previous, current: current), by: sort)
        if limit > 0 { rows = Array(rows.prefix(limit)) }
        let clients = current.value("taskwatch_clients").map { Format.count($0) } ?? "?"
        let frame =
            header(clients) + ", \(rows.count) rows, sorted by \(sort.rawValue), every \(interval.text)\n"
            + ClientTable.render(rows)
        if terminal {
            // Fitted to the screen as it is now (so a resize shows at the next redraw), one line short
            // of its height for the newline after the frame: wrapped rows doubled the table's height on
            // an 80-column terminal, and a table taller than the screen scrolled its header away.
            let fitted = Terminal.fit(
                frame, columns: Terminal.columns(STDOUT_FILENO),
                rows: Terminal.rows(STDOUT_FILENO).map { max(1, $0 - 1) })
            Terminal.write(Terminal.clearScreen + fitted + "\n")
        } else {
            Terminal.line(frame + (once ? "" : "\n"))
        }
    }

    private func showFailure(_ error: HTTPError, terminal: Bool) {
        let message = "taskwatch top: \(error.description); trying again every \(interval.text)"
        if terminal {
            Terminal.write(Terminal.clearScreen + header("?") + "\n" + message + "\n")
        } else {
            Terminal.line(message, to: STDERR_FILENO)
        }
    }

    func scrape(_ client: HTTPClient) throws -> MetricsSnapshot {
        let path = endpoint.path
        let response = try client.get(path)
        guard response.status == 200 else {
            throw HTTPError(
                description: "GET \(path) on \(client.address) answered \(response.status)"
                    + client.hint(status: response.status))
        }
        // Ages are measured against this host's clock, read when the answer arrived: no series the
        // daemon exposes carries its current time (its HTTP Date header has whole seconds only). On
        // the host the daemon runs on, which is where its socket is, the two clocks are one.
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return MetricsSnapshot(
            nanoseconds: monotonicNanoseconds(), unixSeconds: Double(now.tv_sec) + Double(now.tv_nsec) / 1e9,
            samples: PrometheusText.parse(response.text))
    }

    /// Sleeps `nanoseconds`, waking early when a stop is requested.
    static func sleep(_ nanoseconds: UInt64) async {
        let end = monotonicNanoseconds() + nanoseconds
        while !StopSignal.isRequested {
            let now = monotonicNanoseconds()
            if now >= end { return }
            try? await Task.sleep(nanoseconds: min(end - now, 100_000_000))
        }
    }
}
