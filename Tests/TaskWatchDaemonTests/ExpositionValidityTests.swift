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

    /// `le` in OpenMetrics' canonical form, as client_python (and client_golang) write it: a bound of
    /// 1e6 was `1000000.0`, another label value than every other exporter's `1e+06`. Checked against
    /// prometheus_client's own `floatToGoString`.
    @Test func bucketBoundsAreWrittenAsOtherExportersWriteThem() throws {
        let bounds: [Double] = [
            1e6, 2.5e6, 1e10, 123456789, 1234567.5, 999999, 100000, 0.5, 1e-5, 0.0001, 3e-7, 0.1, 1, 9.5e15, 1e16,
            1e21, 9007199254740992,
        ]
        let script =
            "from prometheus_client.utils import floatToGoString as f\nimport sys\n"
            + "for line in sys.stdin: print(f(float(line)))"
        let python = try runProcess(
            "/usr/bin/env", ["python3", "-c", script], input: Data(bounds.map { "\($0)\n" }.joined().utf8))
        try #require(python.status == 0, "\(python.errorOutput)")
        #expect(bounds.map(BucketBound.text) == python.outputText.split(separator: "\n").map(String.init))
        // Negative bounds as Go's %g writes them (client_python leaves them in decimal).
        #expect(BucketBound.text(-2e6) == "-2e+06")
        #expect(BucketBound.text(-0.5) == "-0.5")
        // On /metrics, in both formats.
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(
            1,
            .declare([
                SeriesDeclaration(id: 1, type: .histogram, name: "app_bytes", help: "", bounds: [1024, 1e6, 2.5e7])
            ]))
        h.send(1, .histograms([HistogramUpdate(id: 1, buckets: [1, 2, 3, 4], sum: 5)]))
        for format in [ExpositionFormat.text, .openMetrics] {
            let text = h.text(format)
            #expect(text.contains("le=\"1024.0\"} 1") && text.contains("le=\"1e+06\"} 3"), "\(text)")
            #expect(text.contains("le=\"2.5e+07\"} 6"), "\(text)")
        }
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

    /// The `# TYPE` lines' family names, which must be unique in either format.
    func familyNames(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
    }

    @Test func helloLabelNamedLeIsRefused() throws {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1, labels: [Label("le", "x")])
        h.send(
            1, .declare([SeriesDeclaration(id: 1, type: .histogram, name: "x", help: "", bounds: [0.5])]))
        h.send(1, .histograms([HistogramUpdate(id: 1, buckets: [1, 2], sum: 1)]))
        #expect(h.rejected(.invalidHello) == "1")
        let text = h.text()
        #expect(!text.contains("le=\"x\""))
        try expectValidExposition(Data(text.utf8))
    }

    @Test func derivedPeakNeverDuplicatesADeclaredPeakSeries() throws {
        let gauge = SeriesDeclaration(id: 1, type: .gauge, name: "t3_g", help: "", labels: [Label("a", "1")])
        let declaredPeak = SeriesDeclaration(
            id: 2, type: .gauge, name: "t3_g_peak", help: "", labels: [Label("a", "1")])
        // Declared `_peak` first: the derived one is refused (once, however many samples follow).
        let first = Harness()
        first.open(1, pid: 10)
        first.hello(1)
        first.send(1, .declare([gauge, declaredPeak]))
        first.send(1, .values([ValueUpdate(id: 1, value: 1), ValueUpdate(id: 2, value: 5)]))
        first.send(1, .peaks([PeakSample(id: 1, value: 9), PeakSample(id: 1, value: 8)]))
        first.send(1, .peaks([PeakSample(id: 1, value: 7)]))
        #expect(first.dropped(.duplicateSeries) == "1")
        #expect(first.rejected(.unknownSeries) == "0")
        // Derived `_peak` first: the later declaration is refused.
        let second = Harness()
        second.open(1, pid: 10)
        second.hello(1)
        second.send(1, .declare([gauge]))
        second.send(1, .values([ValueUpdate(id: 1, value: 1)]))
        second.send(1, .peaks([PeakSample(id: 1, value: 9)]))
        second.send(1, .declare([declaredPeak]))
        second.send(1, .values([ValueUpdate(id: 2, value: 5)]))
        #expect(second.dropped(.duplicateSeries) == "1")
        for (h, shown) in [(first, "5"), (second, "9")] {
            let text = h.text()
            let lines = text.split(separator: "\n").filter { $0.hasPrefix("t3_g_peak{") }
            #expect(lines == ["t3_g_peak{process=\"app\",pid=\"10\",a=\"1\"} \(shown)"])
            try expectValidExposition(Data(text.utf8))
        }
    }

    @Test func peakIdentityMatchesDeclarationsWithEscapedAndReorderedLabels() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        let labels = [Label("b", "q\"u\\o,t=e\nü"), Label("a", "")]
        h.send(1, .declare([SeriesDeclaration(id: 1, type: .gauge, name: "g", help: "", labels: labels)]))
        h.send(1, .values([ValueUpdate(id: 1, value: 1)]))
        h.send(1, .peaks([PeakSample(id: 1, value: 2)]))
        h.send(
            1,
            .declare([
                SeriesDeclaration(id: 2, type: .gauge, name: "g_peak", help: "", labels: labels.reversed())
            ]))
        #expect(h.dropped(.duplicateSeries) == "1")
    }

    @Test func counterAndOtherFamilyNeverShareAnOpenMetricsName() throws {
        // Each pair, in both orders and from two clients: the second is a conflict.
        let pairs: [(SeriesDeclaration, SeriesDeclaration)] = [
            (
                SeriesDeclaration(id: 1, type: .counter, name: "t2_thing", help: ""),
                SeriesDeclaration(id: 1, type: .gauge, name: "t2_thing", help: "")
            ),
            (
                SeriesDeclaration(id: 1, type: .counter, name: "x_total", help: ""),
                SeriesDeclaration(id: 1, type: .histogram, name: "x", help: "", bounds: [1])
            ),
            (
                SeriesDeclaration(id: 1, type: .counter, name: "y_bucket", help: ""),
                SeriesDeclaration(id: 1, type: .histogram, name: "y", help: "", bounds: [1])
            ),
            // OpenMetrics keeps `_created` for counters and histograms: prometheus_client refused the
            // whole exposition ("Clashing name") for a gauge that took it.
            (
                SeriesDeclaration(id: 1, type: .counter, name: "z", help: ""),
                SeriesDeclaration(id: 1, type: .gauge, name: "z_created", help: "")
            ),
            (
                SeriesDeclaration(id: 1, type: .histogram, name: "w", help: "", bounds: [1]),
                SeriesDeclaration(id: 1, type: .gauge, name: "w_created", help: "")
            ),
        ]
        for (a, b) in pairs {
            for (first, second) in [(a, b), (b, a)] {
                let h = Harness()
                for (connection, declaration) in [(UInt64(1), first), (2, second)] {
                    h.open(connection, pid: Int32(connection))
                    h.hello(connection)
                    h.send(connection, .declare([declaration]))
                    if declaration.type == .histogram {
                        h.send(connection, .histograms([HistogramUpdate(id: 1, buckets: [1, 1], sum: 1)]))
                    } else {
                        h.send(connection, .values([ValueUpdate(id: 1, value: 1)]))
                    }
                }
                #expect(h.dropped(.conflict) == "1", "\(first.name) then \(second.name)")
                let names = familyNames(h.text(.openMetrics))
                #expect(Set(names).count == names.count, "\(first.name) then \(second.name): \(names)")
                try expectValidExposition(Data(h.exporter.render(.openMetrics)), openMetrics: true)
                try expectValidExposition(Data(h.exporter.render(.text)))
            }
        }
    }

    @Test func counterNamedLikeAKernelSeriesWithoutTotalIsReserved() {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(
            1,
            .declare([
                SeriesDeclaration(id: 1, type: .counter, name: "swift_process_threads", help: ""),
                SeriesDeclaration(id: 2, type: .gauge, name: "swift_process_cpu_seconds", help: ""),
                SeriesDeclaration(id: 3, type: .gauge, name: "swift_process_cpu_seconds_created", help: ""),
            ]))
        #expect(h.dropped(.reservedName) == "3")
    }

    /// A swift-metrics recorder takes negative values, and the protocol negative bounds. OpenMetrics
    /// reads a histogram's sum as a counter: prometheus_client refused the whole exposition for one
    /// negative sum ("Counter-like samples cannot be negative") or a sum beside a negative bound. Such a
    /// series shows its buckets only there (a count needs a sum).
    @Test func aNegativeHistogramSumOrBoundLeavesOnlyTheSumOutOfOpenMetrics() throws {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(
            1,
            .declare([
                SeriesDeclaration(id: 1, type: .histogram, name: "delta", help: "", bounds: [1, 10]),
                SeriesDeclaration(id: 2, type: .histogram, name: "offset", help: "", bounds: [-5, 0, 5]),
                SeriesDeclaration(id: 3, type: .histogram, name: "latency", help: "", bounds: [1, 10]),
            ]))
        h.send(
            1,
            .histograms([
                HistogramUpdate(id: 1, buckets: [2, 0, 0], sum: -7.5),
                HistogramUpdate(id: 2, buckets: [1, 0, 1, 0], sum: 2),
                HistogramUpdate(id: 3, buckets: [1, 1, 0], sum: 4),
            ]))
        let openMetrics = h.text(.openMetrics)
        try expectValidExposition(Data(openMetrics.utf8), openMetrics: true)
        #expect(!openMetrics.contains("delta_sum"))
        #expect(!openMetrics.contains("offset_sum"))
        #expect(!openMetrics.contains("delta_count"))
        #expect(openMetrics.contains("delta_bucket{process=\"app\",pid=\"10\",le=\"+Inf\"} 2"))
        #expect(openMetrics.contains("latency_sum{process=\"app\",pid=\"10\"} 4"))
        let text = h.text(.text)
        try expectValidExposition(Data(text.utf8))
        #expect(text.contains("delta_sum{process=\"app\",pid=\"10\"} -7.5"))
        #expect(text.contains("offset_sum{process=\"app\",pid=\"10\"} 2"))
    }

    @Test func histogramBucketsThatOverflowAreRefused() throws {
        let h = Harness()
        h.open(1, pid: 10)
        h.hello(1)
        h.send(1, .declare([SeriesDeclaration(id: 1, type: .histogram, name: "h", help: "", bounds: [1, 2])]))
        h.send(1, .histograms([HistogramUpdate(id: 1, buckets: [1, 2, 3], sum: 1)]))
        h.send(1, .histograms([HistogramUpdate(id: 1, buckets: [1 << 63, 1 << 63, 3], sum: 1)]))
        #expect(h.rejected(.invalidValue) == "1")
        #expect(h.value("h_count{process=\"app\",pid=\"10\"}") == "6")
        // The largest total that fits is still taken.
        h.send(1, .histograms([HistogramUpdate(id: 1, buckets: [1 << 63, (1 << 63) - 4, 3], sum: 1)]))
        #expect(h.rejected(.invalidValue) == "1")
        try expectValidExposition(Data(h.exporter.render(.text)))
    }
}
