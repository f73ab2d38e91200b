import TaskWatchWire

/// What `taskwatch_build_info` says.
public struct BuildInfo: Sendable {
    public var version: String
    public var revision: String
    public var swiftVersion: String

    public init(version: String, revision: String, swiftVersion: String) {
        self.version = version
        self.revision = revision
        self.swiftVersion = swiftVersion
    }
}

/// Writes families and samples in text 0.0.4 or OpenMetrics 1.0.0.
///
/// Series are written from pre-rendered, pre-escaped label bytes, so a sample line costs a few `memcpy`s
/// and one number formatting.
struct ExpositionWriter: ~Copyable {
    let format: ExpositionFormat
    var out: OutputBuffer

    init(format: ExpositionFormat, capacity: Int) {
        self.format = format
        out = OutputBuffer(capacity: capacity)
    }

    /// Writes the HELP and TYPE lines. In OpenMetrics a counter's family name drops `_total`.
    mutating func family(_ name: String, type: SeriesType, help: String) {
        var familyName = name
        if format == .openMetrics, type == .counter, name.hasSuffix("_total") {
            familyName = String(name.dropLast(6))
        }
        out.append("# HELP ")
        out.append(string: familyName)
        out.append(UInt8(ascii: " "))
        out.append(Escaping.help(help, format: format))
        out.append("\n# TYPE ")
        out.append(string: familyName)
        out.append(UInt8(ascii: " "))
        out.append(string: type.exposedName)
        out.append(UInt8(ascii: "\n"))
    }

    /// The sample name of a counter or gauge: OpenMetrics requires counters to end in `_total`.
    func sampleName(_ name: String, type: SeriesType) -> [UInt8] {
        if format == .openMetrics, type == .counter, !name.hasSuffix("_total") { return Array((name + "_total").utf8) }
        return Array(name.utf8)
    }

    /// Writes `name{first,second} value\n`, leaving out empty label parts.
    @inline(__always)
    mutating func sample(
        _ name: UnsafeRawBufferPointer,
        _ first: UnsafeRawBufferPointer,
        _ second: UnsafeRawBufferPointer,
        _ value: Double
    ) {
        out.append(name)
        if !first.isEmpty || !second.isEmpty {
            out.append(UInt8(ascii: "{"))
            out.append(first)
            if !first.isEmpty && !second.isEmpty { out.append(UInt8(ascii: ",")) }
            out.append(second)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: " "))
        out.append(value: value)
        out.append(UInt8(ascii: "\n"))
    }

    /// Writes `name{first,second,third} value\n`, leaving out empty label parts.
    @inline(__always)
    mutating func sample(
        _ name: UnsafeRawBufferPointer,
        _ first: UnsafeRawBufferPointer,
        _ second: UnsafeRawBufferPointer,
        _ third: UnsafeRawBufferPointer,
        _ value: Double
    ) {
        out.append(name)
        out.append(UInt8(ascii: "{"))
        out.append(first)
        if !first.isEmpty && !second.isEmpty { out.append(UInt8(ascii: ",")) }
        out.append(second)
        if !third.isEmpty && (!first.isEmpty || !second.isEmpty) { out.append(UInt8(ascii: ",")) }
        out.append(third)
        out.append(UInt8(ascii: "}"))
        out.append(UInt8(ascii: " "))
        out.append(value: value)
        out.append(UInt8(ascii: "\n"))
    }

    /// A sample from Swift values, for the daemon's own handful of series.
    mutating func sample(_ name: String, labels: [Label] = [], _ value: Double) {
        let text = Escaping.labelText(labels)
        var name = name
        name.withUTF8 { nameBytes in
            text.withUnsafeBytes { labelBytes in
                sample(
                    UnsafeRawBufferPointer(nameBytes), labelBytes, UnsafeRawBufferPointer(start: nil, count: 0), value)
            }
        }
    }

    /// A sample with pre-rendered client labels.
    mutating func sample(_ name: [UInt8], clientLabels: [UInt8], _ value: Double) {
        name.withUnsafeBytes { nameBytes in
            clientLabels.withUnsafeBytes { labelBytes in
                sample(nameBytes, labelBytes, UnsafeRawBufferPointer(start: nil, count: 0), value)
            }
        }
    }

    consuming func finish() -> ResponseBody {
        if format == .openMetrics { out.append("# EOF\n") }
        return out.body()
    }
}

/// Renders a registry snapshot, the `/proc` series of its clients and the daemon's own series.
enum ExpositionRenderer {
    static func render(
        _ snapshot: RegistrySnapshot,
        format: ExpositionFormat,
        build: BuildInfo,
        kernel: [Int: ProcessStats],
        daemon: ProcessStats?,
        webConfig: WebConfigStatus? = nil,
        httpRequests: [(key: HTTPRequestCounts.Key, count: UInt64)]? = nil,
        httpConnections: HTTPConnectionCounts.Snapshot? = nil
    ) -> ResponseBody {
        var writer = ExpositionWriter(format: format, capacity: 256 + snapshot.seriesTotal * 96)
        writeClientSeries(snapshot, into: &writer)
        writeClientStatus(snapshot, into: &writer)
        writeKernelSeries(snapshot, kernel: kernel, into: &writer)
        writeDaemonSeries(snapshot, build: build, daemon: daemon, into: &writer)
        if let webConfig { writeWebConfigSeries(webConfig, into: &writer) }
        if let httpRequests { writeHTTPRequestSeries(httpRequests, into: &writer) }
        if let httpConnections { writeHTTPConnectionSeries(httpConnections, into: &writer) }
        return writer.finish()
    }

    private static func writeHTTPRequestSeries(
        _ counts: [(key: HTTPRequestCounts.Key, count: UInt64)], into writer: inout ExpositionWriter
    ) {
        writeCounters(
            "taskwatch_http_requests_total",
            help: "HTTP requests answered, by handler (a served path or other) and status code.",
            counts.map { ([Label("handler", $0.key.handler), Label("code", String($0.key.code))], $0.count) },
            into: &writer)
    }

    private static func writeHTTPConnectionSeries(
        _ counts: HTTPConnectionCounts.Snapshot, into writer: inout ExpositionWriter
    ) {
        writeCounters(
            "taskwatch_http_connections_accepted_total", help: "HTTP connections accepted.",
            [([], counts.accepted)], into: &writer)
        writeCounters(
            "taskwatch_http_connections_closed_total",
            help:
                "HTTP connections closed, by whether any request on them was answered (false: a failed TLS "
                + "handshake, a request refused as malformed or too large, nothing sent before the timeout, "
                + "or the connection limit).",
            [
                ([Label("answered", "false")], counts.closedUnanswered),
                ([Label("answered", "true")], counts.closedAnswered),
            ],
            into: &writer)
        writeCounters(
            "taskwatch_http_connections_evicted_total",
            help:
                "HTTP connections shut down to make room for a new one while --web.max-connections were open "
                + "(the oldest without a request in progress, else the oldest whose request has taken 2 s), or "
                + "for a new answer while the bodies of answers not taken filled their cap.",
            [([], counts.evicted)], into: &writer)
        writeCounters(
            "taskwatch_http_connections_refused_total",
            help:
                "HTTP connections closed on arrival, unread, because --web.max-connections were open and none "
                + "could make room (also counted in taskwatch_http_connections_closed_total{answered=\"false\"}).",
            [([], counts.refused)], into: &writer)
    }

    private static func writeWebConfigSeries(_ status: WebConfigStatus, into writer: inout ExpositionWriter) {
        writer.family(
            "taskwatch_web_config_last_reload_successful", type: .gauge,
            help: "Whether the latest load of --web.config.file, at start or on SIGHUP, is in force.")
        writer.sample("taskwatch_web_config_last_reload_successful", status.lastReloadSuccessful ? 1 : 0)
        writer.family(
            "taskwatch_web_config_last_reload_success_timestamp_seconds", type: .gauge,
            help: "Unix time of the latest load of --web.config.file that is in force.")
        writer.sample("taskwatch_web_config_last_reload_success_timestamp_seconds", status.lastSuccessSeconds)
        writer.family(
            "taskwatch_web_requests_limited_total", type: .counter,
            help: "HTTP requests turned away with 429 by rate_limit of --web.config.file.")
        writer.sample(
            String(decoding: writer.sampleName("taskwatch_web_requests_limited_total", type: .counter), as: UTF8.self),
            Double(status.requestsLimited))
    }

    private static func writeClientSeries(_ snapshot: RegistrySnapshot, into writer: inout ExpositionWriter) {
        // The clients holding each family, in the snapshot's (pid) order, from one pass over each
        // client's own families: a scrape then costs what is stored, where asking every client about
        // every family cost families × clients (10,000 names of one client and 4,000 connections that
        // only said hello made 40 million lookups a scrape).
        var holders = [[Int32]](repeating: [], count: snapshot.familySlots)
        for (position, client) in snapshot.clients.enumerated() {
            for key in client.table.familyRanges.keys where Int(key) < holders.count {
                holders[Int(key)].append(Int32(position))
            }
        }
        for family in snapshot.families {
            let clients = holders[family.index]
            if clients.isEmpty { continue }
            writer.family(family.name, type: family.type, help: family.help)
            switch family.type {
            case .counter, .gauge:
                let name = writer.sampleName(family.name, type: family.type)
                for position in clients {
                    writeScalars(family, name: name, client: snapshot.clients[Int(position)], into: &writer)
                }
            case .histogram:
                for position in clients {
                    writeHistograms(family, client: snapshot.clients[Int(position)], into: &writer)
                }
            }
        }
    }

    private static func writeScalars(
        _ family: RegistrySnapshot.FamilyInfo,
        name: [UInt8],
        client: RegistrySnapshot.ClientView,
        into writer: inout ExpositionWriter
    ) {
        let table = client.table
        guard let range = table.familyRanges[UInt32(family.index)] else { return }
        name.withUnsafeBytes { nameBytes in
            client.labelText.withUnsafeBytes { clientBytes in
                table.labelArena.withUnsafeBytes { arena in
                    table.values.withUnsafeBufferPointer { values in
                        for position in range {
                            let series = Int(table.order[position])
                            let value = values[series]
                            if value.bitPattern == SeriesTable.unset.bitPattern { continue }
                            let labels = UnsafeRawBufferPointer(rebasing: arena[table.labels(of: series)])
                            writer.sample(nameBytes, clientBytes, labels, value)
                        }
                    }
                }
            }
        }
    }

    private static func writeHistograms(
        _ family: RegistrySnapshot.FamilyInfo,
        client: RegistrySnapshot.ClientView,
        into writer: inout ExpositionWriter
    ) {
        let table = client.table
        guard let range = table.familyRanges[UInt32(family.index)] else { return }
        let bucketName = Array((family.name + "_bucket").utf8)
        let sumName = Array((family.name + "_sum").utf8)
        let countName = Array((family.name + "_count").utf8)
        // OpenMetrics treats a histogram's sum as a counter: never negative, and absent when a bound is
        // negative; and a count goes only with a sum. Strict parsers (prometheus_client's) refuse the
        // whole exposition otherwise, so there such a series shows its buckets only (the `+Inf` bucket
        // is the count); the text format keeps both, as Prometheus accepts them.
        let sumIsCounterLike = writer.format == .openMetrics
        // Each line is written from its parts (client labels, series labels, `le`) straight into the
        // output, with no per-line arrays.
        bucketName.withUnsafeBytes { bucketBytes in
            sumName.withUnsafeBytes { sumBytes in
                countName.withUnsafeBytes { countBytes in
                    client.labelText.withUnsafeBytes { clientBytes in
                        table.labelArena.withUnsafeBytes { arena in
                            for position in range {
                                let series = Int(table.order[position])
                                let sum = table.values[series]
                                guard sum.bitPattern != SeriesTable.unset.bitPattern,
                                    let slot = table.histograms[Int32(series)]
                                else { continue }
                                let labels = UnsafeRawBufferPointer(rebasing: arena[table.labels(of: series)])
                                var cumulative: UInt64 = 0
                                for (bucket, le) in table.boundSets[slot.boundSet].leTexts.enumerated() {
                                    cumulative &+= table.bucketCounts[slot.offset + bucket]
                                    le.withUnsafeBytes { leBytes in
                                        writer.sample(bucketBytes, clientBytes, labels, leBytes, Double(cumulative))
                                    }
                                }
                                let bounds = table.boundSets[slot.boundSet].bounds
                                if !sumIsCounterLike || (sum >= 0 && (bounds.first ?? 0) >= 0) {
                                    writer.sample(sumBytes, clientBytes, labels, sum)
                                    writer.sample(countBytes, clientBytes, labels, Double(cumulative))
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private static func writeClientStatus(_ snapshot: RegistrySnapshot, into writer: inout ExpositionWriter) {
        guard !snapshot.clients.isEmpty else { return }
        writer.family(
            "taskwatch_client_up", type: .gauge,
            help: "1 while the client is connected, 0 during the grace period after it left.")
        let up = Array("taskwatch_client_up".utf8)
        for client in snapshot.clients { writer.sample(up, clientLabels: client.labelText, client.connected ? 1 : 0) }
        writer.family(
            "taskwatch_client_last_report_timestamp_seconds", type: .gauge,
            help: "Unix time of the last report frame the daemon accepted from the client.")
        let last = Array("taskwatch_client_last_report_timestamp_seconds".utf8)
        for client in snapshot.clients where client.lastReport > 0 {
            writer.sample(last, clientLabels: client.labelText, client.lastReport)
        }
    }

    private static func writeKernelSeries(
        _ snapshot: RegistrySnapshot,
        kernel: [Int: ProcessStats],
        into writer: inout ExpositionWriter
    ) {
        guard !kernel.isEmpty else { return }
        let families: [(String, SeriesType, String, (ProcessStats) -> Double?)] = [
            (
                DaemonSeries.Kernel.cpuSeconds, .counter, "User and system CPU time of the process.",
                { $0.cpuSeconds }
            ),
            (
                DaemonSeries.Kernel.openFDs, .gauge, "Open file descriptors of the process.",
                { $0.openFDs.map(Double.init) }
            ),
            (
                DaemonSeries.Kernel.residentMemoryBytes, .gauge, "Resident memory of the process.",
                { Double($0.residentBytes) }
            ),
            (
                DaemonSeries.Kernel.startTimeSeconds, .gauge, "Start time of the process, in Unix seconds.",
                { $0.startTimeSeconds }
            ),
            (DaemonSeries.Kernel.threads, .gauge, "Threads of the process.", { Double($0.threads) }),
            (
                DaemonSeries.Kernel.virtualMemoryBytes, .gauge, "Virtual memory of the process.",
                { Double($0.virtualBytes) }
            ),
        ]
        for (name, type, help, read) in families {
            writer.family(name, type: type, help: help)
            let nameBytes = writer.sampleName(name, type: type)
            for (index, client) in snapshot.clients.enumerated() {
                guard let stats = kernel[index], let value = read(stats) else { continue }
                writer.sample(nameBytes, clientLabels: client.labelText, value)
            }
        }
    }

    private static func writeDaemonSeries(
        _ snapshot: RegistrySnapshot,
        build: BuildInfo,
        daemon: ProcessStats?,
        into writer: inout ExpositionWriter
    ) {
        writer.family("taskwatch_build_info", type: .gauge, help: "Version of taskwatchd; the value is always 1.")
        writer.sample(
            "taskwatch_build_info",
            labels: [
                Label("version", build.version), Label("revision", build.revision),
                Label("swift_version", build.swiftVersion),
            ], 1)
        writer.family("taskwatch_clients", type: .gauge, help: "Connected clients.")
        writer.sample("taskwatch_clients", Double(snapshot.connectedCount))
        writer.family("taskwatch_series", type: .gauge, help: "Series held for all clients, connected or in grace.")
        writer.sample("taskwatch_series", Double(snapshot.seriesTotal))
        writer.family("taskwatch_messages_received_total", type: .counter, help: "Frames received from clients.")
        writer.sample(
            String(decoding: writer.sampleName("taskwatch_messages_received_total", type: .counter), as: UTF8.self),
            Double(snapshot.stats.messagesReceived))
        writeReasons(
            "taskwatch_messages_rejected_total", help: "Frames refused, by reason.",
            FrameRejection.allCases.map { ($0.rawValue, snapshot.stats.rejectedFrames[$0] ?? 0) }, into: &writer)
        writeReasons(
            "taskwatch_series_dropped_total", help: "Declared series not admitted, by reason.",
            SeriesRejection.allCases.map { ($0.rawValue, snapshot.stats.droppedSeries[$0] ?? 0) }, into: &writer)
        writeReasons(
            "taskwatch_values_dropped_total",
            help:
                "Reported values dropped while their series waits for room under a limit, or for its name "
                + "held by another family, by reason.",
            SeriesRejection.valueDroppingReasons.map { ($0.rawValue, snapshot.stats.droppedValues[$0] ?? 0) },
            into: &writer)
        writeReasons(
            "taskwatch_clients_rejected_total", help: "Connections refused or closed by the daemon, by reason.",
            ClientRejection.allCases.map { ($0.rawValue, snapshot.stats.rejectedClients[$0] ?? 0) }, into: &writer)
        guard let daemon else { return }
        writer.family(
            "process_cpu_seconds_total", type: .counter, help: "Total user and system CPU time spent in seconds.")
        writer.sample("process_cpu_seconds_total", daemon.cpuSeconds)
        if let fds = daemon.openFDs {
            writer.family("process_open_fds", type: .gauge, help: "Number of open file descriptors.")
            writer.sample("process_open_fds", Double(fds))
        }
        if let maxFDs = daemon.maxFDs {
            writer.family("process_max_fds", type: .gauge, help: "Maximum number of open file descriptors.")
            writer.sample("process_max_fds", Double(maxFDs))
        }
        writer.family("process_resident_memory_bytes", type: .gauge, help: "Resident memory size in bytes.")
        writer.sample("process_resident_memory_bytes", Double(daemon.residentBytes))
        writer.family(
            "process_start_time_seconds", type: .gauge, help: "Start time of the process since unix epoch in seconds.")
        writer.sample("process_start_time_seconds", daemon.startTimeSeconds)
        writer.family("process_virtual_memory_bytes", type: .gauge, help: "Virtual memory size in bytes.")
        writer.sample("process_virtual_memory_bytes", Double(daemon.virtualBytes))
        if let maxVirtualBytes = daemon.maxVirtualBytes {
            writer.family(
                "process_virtual_memory_max_bytes", type: .gauge,
                help: "Maximum amount of virtual memory available in bytes.")
            writer.sample("process_virtual_memory_max_bytes", Double(maxVirtualBytes))
        }
        writer.family("process_threads", type: .gauge, help: "Number of OS threads in the process.")
        writer.sample("process_threads", Double(daemon.threads))
    }

    private static func writeReasons(
        _ name: String,
        help: String,
        _ counts: [(String, UInt64)],
        into writer: inout ExpositionWriter
    ) {
        writeCounters(name, help: help, counts.map { ([Label("reason", $0.0)], $0.1) }, into: &writer)
    }

    /// One counter family with a sample per label set.
    private static func writeCounters(
        _ name: String,
        help: String,
        _ samples: [(labels: [Label], count: UInt64)],
        into writer: inout ExpositionWriter
    ) {
        writer.family(name, type: .counter, help: help)
        let sampleName = String(decoding: writer.sampleName(name, type: .counter), as: UTF8.self)
        for (labels, count) in samples { writer.sample(sampleName, labels: labels, Double(count)) }
    }
}
