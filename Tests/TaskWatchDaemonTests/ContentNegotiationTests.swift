import Testing

@testable import TaskWatchDaemon

@Suite struct ExpositionNegotiationTests {
    @Test(arguments: [
        // What Prometheus 2.x and 3.x send.
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            + "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;"
            + "q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1",
        "application/openmetrics-text",
        "application/openmetrics-text; version=0.0.1",
        "APPLICATION/OpenMetrics-Text",
        "text/plain;q=0.5, application/openmetrics-text;q=0.6",
        "text/plain;q=0, application/openmetrics-text;q=0.001",
        "application/*",
        "application/openmetrics-text, text/*;q=0.9",
        "application/openmetrics-text ; version=\"1.0.0\" ; q=1.0",
        "application/openmetrics-text,,  ,",
    ])
    func prefersOpenMetrics(_ accept: String) {
        #expect(ContentNegotiation.exposition(accept: accept) == .openMetrics)
    }

    @Test(arguments: [
        "text/plain",
        "text/plain;version=0.0.4",
        "*/*",
        "",
        "   ",
        "application/json",
        // Equal preference is a tie, and ties go to text.
        "application/openmetrics-text, text/plain",
        "application/openmetrics-text;q=0.5, text/plain;q=0.5",
        "application/openmetrics-text;q=0.5, */*",
        "text/*, application/openmetrics-text;q=0.9",
        "application/openmetrics-text;q=0",
        "application/openmetrics-text;version=2.0.0",
        // Nothing acceptable: we still answer in text rather than 406.
        "text/plain;q=0",
        // A more specific entry overrides a wildcard, even with a lower weight.
        "application/*;q=1, application/openmetrics-text;q=0, text/plain;q=0.1",
        "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
    ])
    func prefersText(_ accept: String) {
        #expect(ContentNegotiation.exposition(accept: accept) == .text)
    }

    @Test(arguments: [
        "application/openmetrics-text;q=2",
        "application/openmetrics-text;q=1.5",
        "application/openmetrics-text;q=0.0001",
        "application/openmetrics-text;q=-1",
        "application/openmetrics-text;q=",
        "application/openmetrics-text;q=abc",
        "application/openmetrics-text;q=1.001",
        "application/openmetrics-text;version=\"1.0.0",
        "application/openmetrics-text;=1",
        "application/openmetrics-text;version",
        "application/openmetrics-text/extra",
        "application/",
        "/openmetrics-text",
        "application/openmetrics-text text/plain;q=0",
        "application/openmetrics-text\u{0}",
        "application/openmetrics-téxt",
        "\u{FEFF}application/openmetrics-text",
        "application/openmetrics-text;q=0.9 garbage",
        String(repeating: "application/openmetrics-text;q=1 ,", count: 10_000) + "\"",
    ])
    func malformedFallsBackToText(_ accept: String) {
        #expect(ContentNegotiation.exposition(accept: accept) == .text)
    }

    @Test func absentHeaderIsText() {
        #expect(ContentNegotiation.exposition(accept: nil) == .text)
    }

    @Test func quotedParametersMayContainSeparators() {
        let accept = "text/plain;note=\"a,b;q=1\\\"c\";q=0.1, application/openmetrics-text;q=0.2"
        #expect(ContentNegotiation.exposition(accept: accept) == .openMetrics)
        let elements = ContentNegotiation.parseList(accept)
        #expect(elements?.count == 2)
        #expect(elements?.first?.parameter("note") == "a,b;q=1\"c")
    }

    @Test func randomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("application/openmetrics-text;q=0.5,*/ \t\"\\=,;.0123456789".utf8) + [0, 0xFF, 0xC3]
        for _ in 0..<5_000 {
            let length = Int.random(in: 0..<80, using: &generator)
            let bytes = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            let header = String(decoding: bytes, as: UTF8.self)
            _ = ContentNegotiation.exposition(accept: header)
            _ = ContentNegotiation.acceptsGzip(acceptEncoding: header)
        }
    }

    @Test(arguments: [
        ("0", 0.0), ("1", 1.0), ("0.5", 0.5), ("0.123", 0.123), ("1.000", 1.0), ("0.", 0.0), ("1.", 1.0),
    ])
    func validQValues(_ text: String, _ value: Double) {
        #expect(ContentNegotiation.qvalue(text) == value)
    }

    @Test(arguments: ["", ".5", "2", "0.1234", "1.1", "01", "0,5", "0.5 ", "-0", "1e0", "٠.5"])
    func invalidQValues(_ text: String) {
        #expect(ContentNegotiation.qvalue(text) == nil)
    }
}

@Suite struct GzipNegotiationTests {
    @Test(arguments: [
        "gzip", "GZIP", "gzip, deflate, br", "x-gzip", "*", "br;q=1.0, gzip;q=0.8, *;q=0.1", "deflate, *;q=0.5",
        "gzip;q=0.001", "identity;q=0, gzip", " gzip ; q=1 ", "*;q=0, gzip", ",gzip,",
    ])
    func allows(_ header: String) {
        #expect(ContentNegotiation.acceptsGzip(acceptEncoding: header))
    }

    @Test(arguments: [
        "", "identity", "deflate, br", "gzip;q=0", "gzip;q=0.000", "*;q=0", "gzip;q=0, *", "*, gzip;q=0",
        // Malformed: never compress, the safe answer for a confused client.
        "gzip;q=2", "gzip;q=x", "gzip/plain", "gzip deflate", "gzip;q", "gzip;q=\"1", "\u{1}gzip",
    ])
    func refuses(_ header: String) {
        #expect(!ContentNegotiation.acceptsGzip(acceptEncoding: header))
    }

    @Test func absentHeaderRefuses() {
        #expect(!ContentNegotiation.acceptsGzip(acceptEncoding: nil))
    }
}
