import Testing

@testable import TaskWatchDaemon

@Suite struct OutputBufferTests {
    private func rendered(_ value: Double) -> String {
        var buffer = OutputBuffer(capacity: 64)
        buffer.append(value: value)
        return String(decoding: buffer.bytes(), as: UTF8.self)
    }

    /// An unlimited RLIMIT_AS is `UInt64.max`; client_golang (Go's shortest `%g`) writes it this way.
    @Test func largestUInt64AsClientGolangWritesIt() {
        #expect(rendered(Double(UInt64.max)) == "1.8446744073709552e+19")
    }

    /// The allocation-free decimal path writes exactly what `description` writes.
    @Test func shortDecimalsMatchDescription() {
        var generator = SystemRandomNumberGenerator()
        var values: [Double] = [0.5, -0.5, 2.5, 0.1, 0.2, 0.3, 0.001, 0.0015, 123.456, 999_999_999.5, -42.125, 1e-3]
        for _ in 0..<20_000 {
            let digits = Int.random(in: 1...6, using: &generator)
            var scale = 1.0
            for _ in 0..<digits { scale *= 10 }
            values.append(Double(Int64.random(in: -1_000_000_000...1_000_000_000, using: &generator)) / scale)
            values.append(Double.random(in: -1e6...1e6, using: &generator))
        }
        for value in values where value != value.rounded(.towardZero) {
            #expect(rendered(value) == value.description, "\(value)")
        }
    }
}
