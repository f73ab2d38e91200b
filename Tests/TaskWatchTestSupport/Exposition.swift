import Foundation
import Testing

/// One sample of a text exposition: name, labels and value.
public struct Sample: Sendable {
    public var name: String
    public var labels: [String: String]
    public var value: Double

    /// Whether this sample is named `name` and carries every label of `labels`.
    public func matches(_ name: String, _ labels: [String: String]) -> Bool {
        self.name == name && labels.allSatisfy { self.labels[$0.key] == $0.value }
    }
}

/// Parses the text exposition format, comments skipped (no escaped quotes or commas in label values).
public func parseSamples(_ text: String) -> [Sample] {
    var samples: [Sample] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            continue
        }
        let head = line[..<space]
        guard let brace = head.firstIndex(of: "{") else {
            samples.append(Sample(name: String(head), labels: [:], value: value))
            continue
        }
        var labels: [String: String] = [:]
        for pair in head[head.index(after: brace)..<head.index(before: head.endIndex)].split(separator: ",") {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            labels[String(pair[..<equals])] = String(pair[pair.index(after: equals)...].dropFirst().dropLast())
        }
        samples.append(Sample(name: String(head[..<brace]), labels: labels, value: value))
    }
    return samples
}

/// Checks an exposition with promtool (text only) and Python's prometheus_client (text or OpenMetrics),
/// implementations independent of ours.
public func expectValidExposition(
    _ body: Data, openMetrics: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    if !openMetrics {
        let promtool = try runProcess("promtool", ["check", "metrics"], input: body)
        #expect(
            promtool.status == 0, "promtool: \(promtool.outputText) \(promtool.errorOutput)",
            sourceLocation: sourceLocation)
    }
    let module = openMetrics ? "prometheus_client.openmetrics.parser" : "prometheus_client.parser"
    let script = """
        import sys
        from \(module) import text_string_to_metric_families as parse
        families = list(parse(sys.stdin.read()))
        print(sum(len(f.samples) for f in families), "samples")
        """
    let python = try runProcess("python3", ["-c", script], input: body)
    #expect(
        python.status == 0, "prometheus_client: \(python.outputText) \(python.errorOutput)",
        sourceLocation: sourceLocation)
}
