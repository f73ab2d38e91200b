import Glibc
import Logging
import TaskWatchWire

/// A warning admitted by `RefusalLog` while the registry's lock was held, written once it is released
/// so that a slow log (a stalled journal, a full pipe) never holds up scrapes.
struct RefusalLine {
    var message: String
    var suppressed: Int
    var metadata: Logger.Metadata
    /// The peer whose command name (`/proc/<pid>/comm`) the line gets when written: read outside the
    /// lock, and useful for a program that never said hello, or is gone by the time anyone looks.
    var commandOf: Int32?
}

extension RefusalLog {
    /// A line for a connection refused or closed for `reason` (`taskwatch_clients_rejected_total`), or
    /// nil when the rate limit holds it back. `details` is only built for a line that is written, so a
    /// flood of refusals allocates nothing for the lines held back.
    func clientRejected(
        _ reason: ClientRejection, peer: PeerCredentials, details: @autoclosure () -> Logger.Metadata = [:]
    ) -> RefusalLine? {
        guard let suppressed = admit(counter: "taskwatch_clients_rejected_total", reason: reason.rawValue) else {
            return nil
        }
        var metadata: Logger.Metadata = [
            "reason": "\(reason.rawValue)", "pid": .stringConvertible(peer.pid), "uid": .stringConvertible(peer.uid),
            "gid": .stringConvertible(peer.gid),
        ]
        metadata.merge(details()) { $1 }
        return RefusalLine(
            message: "Ingest client rejected", suppressed: suppressed, metadata: metadata, commandOf: peer.pid)
    }

    /// Logs a connection the listener could not accept (`no_file_descriptors`): no peer is known, since
    /// the kernel gave no descriptor (or no credentials) to ask.
    func acceptFailed(errno code: Int32) {
        let reason = ClientRejection.noFileDescriptors
        guard let suppressed = admit(counter: "taskwatch_clients_rejected_total", reason: reason.rawValue) else {
            return
        }
        warning(
            "Ingest client rejected", suppressed: suppressed,
            metadata: ["reason": "\(reason.rawValue)", "err": "\(String(cString: strerror(code)))"])
    }

    /// A line for a series not admitted for `reason` (`taskwatch_series_dropped_total`), or nil when the
    /// rate limit holds it back. `name` is the metric name as it would be exposed. The name and labels
    /// are only built for a line that is written: a client flooding declarations past its limit holds
    /// the registry's lock, and must not make it allocate for each one. `waiting`: the declaration is
    /// kept, to be admitted once room frees (`waiting=true` on the line).
    func seriesDropped(
        _ reason: SeriesRejection, name: @autoclosure () -> String, type: SeriesType,
        labelNames: @autoclosure () -> [String], client: borrowing ClientState, limit: Int? = nil,
        waiting: Bool = false
    ) -> RefusalLine? {
        guard let suppressed = admit(counter: "taskwatch_series_dropped_total", reason: reason.rawValue) else {
            return nil
        }
        var metadata: Logger.Metadata = [
            "reason": "\(reason.rawValue)", "metric": "\(name())", "type": "\(type.exposedName)",
            "labels": "\(labelNames().joined(separator: ","))", "process": "\(client.processName)",
            "pid": .stringConvertible(client.peer.pid),
        ]
        if let limit { metadata["limit"] = .stringConvertible(limit) }
        if waiting { metadata["waiting"] = "true" }
        return RefusalLine(message: "Series dropped", suppressed: suppressed, metadata: metadata)
    }

    /// Writes lines admitted under a lock, now that it is released.
    func write(_ lines: [RefusalLine]) {
        for var line in lines {
            if let pid = line.commandOf, let command = ProcessReader.command(pid: pid) {
                line.metadata["command"] = "\(command)"
            }
            warning(line.message, suppressed: line.suppressed, metadata: line.metadata)
        }
    }
}
