/// Picks the response format and encoding from request headers. Pure functions: a malformed header
/// never fails a scrape, it only selects the most widely understood answer (text, uncompressed).
public enum ContentNegotiation {
    /// The exposition format for an `Accept` header. OpenMetrics only when the client rates
    /// `application/openmetrics-text` strictly above `text/plain`; anything absent, unparsable or
    /// tied gets the text format.
    public static func exposition(accept: String?) -> ExpositionFormat {
        guard let accept, let ranges = parseList(accept) else { return .text }
        var openMetrics = Preference()
        var text = Preference()
        for range in ranges {
            let parts = range.value.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return .text }
            guard let q = range.quality else { return .text }
            let (type, subtype) = (parts[0], parts[1])
            if type == "*" && subtype == "*" {
                openMetrics.offer(q, specificity: 0)
                text.offer(q, specificity: 0)
            } else if subtype == "*" {
                if type == "application" { openMetrics.offer(q, specificity: 1) }
                if type == "text" { text.offer(q, specificity: 1) }
            } else if type == "application" && subtype == "openmetrics-text" {
                // We write 1.0.0; 0.0.1 is its draft and parses the same, as client_golang assumes.
                let version = range.parameter("version")
                if version == nil || version == "1.0.0" || version == "0.0.1" {
                    openMetrics.offer(q, specificity: 2)
                }
            } else if type == "text" && subtype == "plain" {
                text.offer(q, specificity: 2)
            }
        }
        return openMetrics.quality > text.quality ? .openMetrics : .text
    }

    /// Whether an `Accept-Encoding` header allows gzip: an explicit `gzip` (or `x-gzip`) entry
    /// decides, else `*`; `q=0` refuses. Absent or unparsable headers get no compression.
    public static func acceptsGzip(acceptEncoding: String?) -> Bool {
        guard let acceptEncoding, let codings = parseList(acceptEncoding) else { return false }
        var gzip = Preference()
        for coding in codings {
            guard !coding.value.contains("/"), let q = coding.quality else { return false }
            switch coding.value {
            case "gzip", "x-gzip": gzip.offer(q, specificity: 1)
            case "*": gzip.offer(q, specificity: 0)
            default: break
            }
        }
        return gzip.quality > 0
    }

    /// The best quality among the most specific entries that matched, as RFC 9110 §12.5.1 ranks
    /// them; nothing matched means not acceptable.
    private struct Preference {
        private var specificity = -1
        private(set) var quality = 0.0

        mutating func offer(_ q: Double, specificity level: Int) {
            if level > specificity {
                specificity = level
                quality = q
            } else if level == specificity {
                quality = max(quality, q)
            }
        }
    }

    /// One list element: a lowercased token (or type/subtype) and its parameters.
    struct Element: Equatable {
        var value: String
        var parameters: [Parameter]

        struct Parameter: Equatable {
            var name: String
            var value: String
        }

        func parameter(_ name: String) -> String? { parameters.first { $0.name == name }?.value }

        /// The `q` weight, 1 when absent, nil when it is not a valid qvalue.
        var quality: Double? {
            guard let text = parameter("q") else { return 1 }
            return ContentNegotiation.qvalue(text)
        }
    }

    /// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), RFC 9110 §12.4.2.
    static func qvalue(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "0") || first == UInt8(ascii: "1") else { return nil }
        if bytes.count == 1 { return first == UInt8(ascii: "1") ? 1 : 0 }
        let fraction = bytes.dropFirst(2)
        guard bytes[1] == UInt8(ascii: "."), fraction.count <= 3,
            fraction.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        if first == UInt8(ascii: "1") { return fraction.allSatisfy { $0 == UInt8(ascii: "0") } ? 1 : nil }
        var thousandths = 0
        for (index, digit) in fraction.enumerated() {
            thousandths += Int(digit - UInt8(ascii: "0")) * [100, 10, 1][index]
        }
        return Double(thousandths) / 1000
    }

    /// Parses `#( value *( OWS ";" OWS name "=" ( token / quoted-string ) ) )`. Empty elements are
    /// skipped as RFC 9110 §5.6.1 requires; any other deviation makes the whole header malformed.
    static func parseList(_ header: String) -> [Element]? {
        var scanner = Scanner(Array(header.utf8))
        var elements: [Element] = []
        while true {
            scanner.skipWhitespace()
            if scanner.atEnd { return elements }
            if scanner.consume(UInt8(ascii: ",")) { continue }
            guard var value = scanner.token() else { return nil }
            if scanner.consume(UInt8(ascii: "/")) {
                guard let subtype = scanner.token() else { return nil }
                value += "/" + subtype
            }
            var element = Element(value: value.lowercased(), parameters: [])
            while true {
                scanner.skipWhitespace()
                guard scanner.consume(UInt8(ascii: ";")) else { break }
                scanner.skipWhitespace()
                // A trailing or doubled ";" carries no parameter; tolerated like an empty element.
                if scanner.atEnd || scanner.peek == UInt8(ascii: ",") || scanner.peek == UInt8(ascii: ";") { continue }
                guard let name = scanner.token(), scanner.consume(UInt8(ascii: "=")),
                    let parameterValue = scanner.token() ?? scanner.quotedString()
                else { return nil }
                element.parameters.append(Element.Parameter(name: name.lowercased(), value: parameterValue))
            }
            elements.append(element)
            scanner.skipWhitespace()
            if scanner.atEnd { return elements }
            guard scanner.consume(UInt8(ascii: ",")) else { return nil }
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { index == bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[index] }

        mutating func skipWhitespace() {
            while let byte = peek, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { index += 1 }
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func token() -> String? {
            let start = index
            while let byte = peek, Self.isTokenCharacter(byte) { index += 1 }
            return index > start ? String(decoding: bytes[start..<index], as: UTF8.self) : nil
        }

        mutating func quotedString() -> String? {
            let start = index
            guard consume(UInt8(ascii: "\"")) else { return nil }
            var value: [UInt8] = []
            while let byte = peek {
                index += 1
                switch byte {
                case UInt8(ascii: "\""): return String(decoding: value, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let escaped = peek else { break }
                    value.append(escaped)
                    index += 1
                default: value.append(byte)
                }
            }
            index = start
            return nil
        }

        private static func isTokenCharacter(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                true
            default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
        }
    }
}
