import Foundation
import TaskWatchTestSupport
import TaskWatchWire
import Testing

@testable import TaskWatchDaemon

@Suite struct ExpositionValidityTests {
    /// A registry holding every shape a client can produce, including awkward label values.
    func richHarness() -> Harness {
        let h = Harness()
        h.open(1, pid: getpid())
        h.hello(1, process: "quote\" back\\slash new\nline ü", labels: [Label("zone", "eu-1")])
        h.send(
            1,
            .declare([
                tasksGauge, createdCounter,
                SeriesDeclaration(
                    id: 3, type: .counter, name: "swift_tasks_finished_total",
                    help: "Ended \"tasks\" \\ by outcome.\nSecond line.",
                    labels: [Label("task", "default"), Label("outcome", "success")]),
                SeriesDeclaration(
                    id: 4, type: .histogram, name: "swift_task_duration_seconds", help: "Lifetime.",
                    labels: [Label("task", "default")], bounds: [0.001, 0.01, 0.1, 1]),
                SeriesDeclaration(id: 5, type: .counter, name: "app_requests", help: "No _total suffix."),
                SeriesDeclaration(
                    id: 6, type: .gauge, name: "app_temperature", help: "", labels: [Label("where", "🚀")]),
            ]))
        h.send(
            1,
            .values([
                ValueUpdate(id: 1, value: 12), ValueUpdate(id: 2, value: 1e20), ValueUpdate(id: 3, value: 0.5),
                ValueUpdate(id: 5, value: 3), ValueUpdate(id: 6, value: -.infinity),
            ]))
        h.send(1, .histograms([HistogramUpdate(id: 4, buckets: [1, 2, 3, 4, 5], sum: 12.5)]))
        h.send(1, .peaks([PeakSample(id: 1, value: 40)]))
        h.open(2, pid: 2)
        h.hello(2, process: "other")
        h.send(2, .declare([tasksGauge]))
        h.send(2, .values([ValueUpdate(id: 1, value: 4)]))
        h.registry.connectionClosed(ConnectionID(2))
        return h
    }

    @Test func textFormatPassesPromtoolAndPython() throws {
        let body = richHarness().exporter.render(.text)
        try expectValidExposition(Data(body))
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.contains("# HELP swift_tasks_finished_total Ended \"tasks\" \\\\ by outcome.\\nSecond line.\n"))
        #expect(text.contains("swift_tasks_created_total{process=\"quote\\\" back\\\\slash new\\nline ü\""))
        #expect(text.contains("taskwatch_build_info{version=\"test\",revision=\"abc\",swift_version=\"6.3\"} 1"))
        #expect(text.contains("swift_process_resident_memory_bytes{"))
        #expect(text.contains("process_resident_memory_bytes "))
        #expect(
            text.contains(
                "# HELP process_virtual_memory_max_bytes Maximum amount of virtual memory available in bytes.\n"
                    + "# TYPE process_virtual_memory_max_bytes gauge\nprocess_virtual_memory_max_bytes "))
        #expect(!text.contains("# EOF"))
    }

    @Test func openMetricsPassesPythonAndEndsWithEOF() throws {
        let body = richHarness().exporter.render(.openMetrics)
        try expectValidExposition(Data(body), openMetrics: true)
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.hasSuffix("# EOF\n"))
        #expect(text.contains("# TYPE swift_tasks_created counter\n"))
        #expect(text.contains("app_requests_total{"))
    }

    @Test func emptyRegistryIsValid() throws {
        let h = Harness()
        try expectValidExposition(Data(h.exporter.render(.text)))
        try expectValidExposition(Data(h.exporter.render(.openMetrics)), openMetrics: true)
    }

    @Test func familiesAreNeverSplitAcrossClients() {
        let text = richHarness().text()
        let typeLines = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }
        #expect(Set(typeLines).count == typeLines.count)
    }
}
