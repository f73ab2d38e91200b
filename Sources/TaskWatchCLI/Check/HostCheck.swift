import Glibc

/// One finding of `taskwatch check`.
struct CheckFinding: Sendable, Equatable {
    var ok: Bool
    var message: String
}

/// The checks of `taskwatch check`, in order. Each failure has its own exit status:
/// 1 the ingest socket is missing, not a socket or refuses connections; 2 the daemon's HTTP
/// endpoint does not answer or is not ready; 3 the metrics path (`/metrics` unless `--path` says
/// otherwise) is unusable (not 200, or no `taskwatch_build_info`). The lowest failing status wins;
/// 0 means every check passed.
struct HostCheck {
    static let socketFailure: Int32 = 1
    static let httpFailure: Int32 = 2
    static let metricsFailure: Int32 = 3

    var socketPath: String
    var client: HTTPClient
    /// Where the daemon serves its metrics (`--web.telemetry-path`).
    var metricsPath: String

    private(set) var findings: [CheckFinding] = []
    private(set) var status: Int32 = 0

    init(socketPath: String, client: HTTPClient, metricsPath: String = "/metrics") {
        self.socketPath = socketPath
        self.client = client
        self.metricsPath = metricsPath
    }

    private mutating func pass(_ message: String) { findings.append(CheckFinding(ok: true, message: message)) }

    private mutating func fail(_ message: String, _ code: Int32) {
        findings.append(CheckFinding(ok: false, message: message))
        if status == 0 || code < status { status = code }
    }

    mutating func run() {
        checkSocket()
        checkHTTP()
    }

    /// The socket file exists, is a socket, and accepts a connection, which the daemon keeps. The
    /// connection is closed without a hello, so the daemon lists no client for it.
    mutating func checkSocket() {
        var info = stat()
        guard stat(socketPath, &info) == 0 else {
            let error = errno
            if error == EACCES {
                fail(
                    "ingest socket \(socketPath): permission denied: this user may not enter a directory on "
                        + "its path (run as a user who may, or set --socket or TASKWATCH_SOCKET)", Self.socketFailure)
                return
            }
            fail(
                "ingest socket \(socketPath): \(String(cString: strerror(error))) (is taskwatchd running? set "
                    + "--socket or TASKWATCH_SOCKET)", Self.socketFailure)
            return
        }
        if let kind = IngestSocket.nonSocketKind(socketPath) {
            fail("ingest socket \(socketPath) is \(kind), not a socket", Self.socketFailure)
            return
        }
        let probe = IngestSocket.probe(socketPath)
        if probe == .closedByDaemon {
            fail("ingest socket \(socketPath): \(IngestSocket.refusalAdvice(socketPath))", Self.socketFailure)
            return
        }
        if case .failed(let error) = probe {
            // Not a stale file: the daemon may well be there, and this user is simply not let in.
            if error == EACCES || error == EPERM {
                fail("ingest socket \(socketPath): \(IngestSocket.permissionAdvice(info))", Self.socketFailure)
                return
            }
            let reason = String(cString: strerror(error))
            fail(
                "ingest socket \(socketPath) refuses connections: \(reason) (is taskwatchd running? stale socket "
                    + "file?)", Self.socketFailure)
            return
        }
        pass("ingest socket \(socketPath) accepts connections")
    }

    mutating func checkHTTP() {
        do {
            let ready = try client.get("/-/ready")
            guard ready.status == 200 else {
                fail(
                    "daemon at \(client.address) is not ready: /-/ready answered \(ready.status)"
                        + client.hint(status: ready.status), Self.httpFailure)
                return
            }
            pass("daemon at \(client.address) is ready")
        } catch let error as HTTPError {
            fail("daemon HTTP: \(error.description)", Self.httpFailure)
            return
        } catch {
            fail("daemon HTTP: \(error)", Self.httpFailure)
            return
        }
        let metrics: HTTPResponse
        do {
            metrics = try client.get(metricsPath)
        } catch {
            fail("GET \(metricsPath) on \(client.address): \(error)", Self.metricsFailure)
            return
        }
        guard metrics.status == 200 else {
            fail(
                "GET \(metricsPath) on \(client.address) answered \(metrics.status)"
                    + client.hint(status: metrics.status), Self.metricsFailure)
            return
        }
        let samples = PrometheusText.parse(metrics.text)
        guard let build = samples.first(where: { $0.name == "taskwatch_build_info" }) else {
            fail(
                "\(metricsPath) on \(client.address) has no taskwatch_build_info: is this taskwatchd?",
                Self.metricsFailure)
            return
        }
        pass(
            "taskwatchd version \(build.label("version")) (revision \(build.label("revision")), "
                + "Swift \(build.label("swift_version")))")
        let snapshot = MetricsSnapshot(nanoseconds: 0, samples: samples)
        let up = snapshot.values("taskwatch_client_up")
        let live = snapshot.values("swift_tasks")
        let connected = up.filter { $0.value >= 1 }.keys.sorted { ($0.process, $0.pid) < ($1.process, $1.pid) }
        let gone = up.count - connected.count
        var message = "\(connected.count) process\(connected.count == 1 ? "" : "es") connected"
        if gone > 0 { message += ", \(gone) recently gone" }
        pass(message)
        for key in connected {
            let tasks = live[key].map { ", \(Format.count($0)) live tasks" } ?? ""
            findings.append(CheckFinding(ok: true, message: "  \(key.process) pid \(key.pid)\(tasks)"))
        }
    }
}
