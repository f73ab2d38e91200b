/// One sample of the Prometheus text format: a name, its labels in order, and a value.
struct PrometheusSample: Sendable, Equatable {
    var name: String
    var labels: [String: String]
    var value: Double

    func label(_ key: String) -> String { labels[key] ?? "" }
}

/// A minimal reader of the Prometheus text format 0.0.4: comments and blank lines are skipped,
/// label values may hold the escapes `\\`, `\"` and `\n`, and a trailing timestamp is ignored.
enum PrometheusText {
    static func parse(_ text: String) -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        for line in text.split(separator: "\n") {
            if let sample = parseLine(line) { samples.append(sample) }
        }
        return samples
    }

    static func parseLine(_ line: Substring) -> PrometheusSample? {
        let scalars = Array(line.unicodeScalars)
        var index = 0
        while index < scalars.count, scalars[index] == " " || scalars[index] == "\t" { index += 1 }
        guard index < scalars.count, scalars[index] != "#" else { return nil }
        var name = String.UnicodeScalarView()
        while index < scalars.count, scalars[index] != "{", scalars[index] != " ", scalars[index] != "\t" {
            name.append(scalars[index])
            index += 1
        }
        guard !name.isEmpty else { return nil }
        var labels: [String: String] = [:]
        if index < scalars.count, scalars[index] == "{" {
            index += 1
            while true {
                while index < scalars.count, scalars[index] == " " || scalars[index] == "," { index += 1 }
                guard index < scalars.count else { return nil }
                if scalars[index] == "}" {
                    index += 1
                    break
                }
                var key = String.UnicodeScalarView()
                while index < scalars.count, scalars[index] != "=" {
                    key.append(scalars[index])
                    index += 1
                }
                index += 1
                guard index < scalars.count, scalars[index] == "\"" else { return nil }
                index += 1
                var value = String.UnicodeScalarView()
                var closed = false
                while index < scalars.count {
                    let scalar = scalars[index]
                    index += 1
                    if scalar == "\\", index < scalars.count {
                        let escaped = scalars[index]
                        index += 1
                        switch escaped {
                        case "n": value.append("\n")
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        default:
                            value.append("\\")
                            value.append(escaped)
                        }
                    } else if scalar == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(scalar)
                    }
                }
                guard closed else { return nil }
                labels[String(key).trimmingCharacters(in: " ")] = String(value)
            }
        }
        while index < scalars.count, scalars[index] == " " || scalars[index] == "\t" { index += 1 }
        var valueText = String.UnicodeScalarView()
        while index < scalars.count, scalars[index] != " ", scalars[index] != "\t" {
            valueText.append(scalars[index])
            index += 1
        }
        guard let value = parseValue(String(valueText)) else { return nil }
        return PrometheusSample(name: String(name), labels: labels, value: value)
    }

    static func parseValue(_ text: String) -> Double? {
        switch text {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: return Double(text)
        }
    }
}
