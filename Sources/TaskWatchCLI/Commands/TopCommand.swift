import ArgumentParser
import Glibc

extension TopSort: ExpressibleByArgument {}

/// `taskwatch top`: a live view of the daemon's clients, read over HTTP.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Show the daemon's clients live: tasks, rates, memory and executor lag.",
        discussion: """
            Rates come from two scrapes --interval apart. On a terminal the view redraws in place \
            until interrupted; otherwise a plain table is printed every interval. --once prints one \
            table (after one interval, for the rates) and exits.
            """
    )

    @Option(help: "The daemon's HTTP address.")
    var address = "localhost:10101"

    @Option(help: "Refresh interval, e.g. 2s.")
    var interval = "2s"

    @Option(help: "Sort by \(TopSort.allCases.map(\.rawValue).joined(separator: ", ")).")
    var sort: TopSort = .live

    @Flag(help: "Print one table and exit.")
    var once = false

    @Option(help: "Show at most this many rows (0: all).")
    var limit = 0

    func run() async throws {
        let client = HTTPClient(address: address)
        let step: UInt64
        do {
            step = try parseDuration(interval, flag: "interval")
        } catch let error as CLIError {
            Terminal.line("taskwatch top: \(error.description)", to: STDERR_FILENO)
            throw ExitCode(error.status)
        }
        StopSignal.install()
        let terminal = !once && Terminal.isTerminal(STDOUT_FILENO)
        var previous: MetricsSnapshot?
        do {
            previous = try Self.scrape(client)
            while !StopSignal.isRequested {
                await Self.sleep(step)
                if StopSignal.isRequested { break }
                let current = try Self.scrape(client)
                var rows = ClientTable.sorted(ClientTable.rows(previous: previous, current: current), by: sort)
                if limit > 0 { rows = Array(rows.prefix(limit)) }
                let clients = current.value("taskwatch_clients").map { Format.count($0) } ?? "?"
                let header =
                    "taskwatchd \(address): \(clients) clients, \(rows.count) rows, sorted by \(sort.rawValue), "
                    + "every \(interval)"
                let frame = header + "\n" + ClientTable.render(rows)
                if terminal {
                    Terminal.write(Terminal.clearScreen + frame + "\n")
                } else {
                    Terminal.line(frame + (once ? "" : "\n"))
                }
                previous = current
                if once { break }
            }
        } catch let error as HTTPError {
            Terminal.line("taskwatch top: \(error.description)", to: STDERR_FILENO)
            throw ExitCode(2)
        }
    }

    static func scrape(_ client: HTTPClient) throws -> MetricsSnapshot {
        let response = try client.get("/metrics")
        guard response.status == 200 else {
            throw HTTPError(description: "GET /metrics on \(client.address) answered \(response.status)")
        }
        return MetricsSnapshot(nanoseconds: monotonicNanoseconds(), samples: PrometheusText.parse(response.text))
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
