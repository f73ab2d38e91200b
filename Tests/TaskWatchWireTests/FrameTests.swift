import Testing

@testable import TaskWatchWire

@Suite struct FrameRoundTripTests {
    static let hello = Hello(
        claimedPID: 4242,
        intervalNanoseconds: 10_000_000,
        process: "api-server",
        clientVersion: "0.1.0",
        labels: [Label("zone", "eu \"1\"\n")]
    )
    static let declarations = [
        SeriesDeclaration(
            id: 1, type: .gauge, name: "swift_tasks", help: "Live tasks.", labels: [Label("task", "default")]),
        SeriesDeclaration(id: 2, type: .counter, name: "swift_tasks_created_total", help: "Tasks started."),
        SeriesDeclaration(
            id: 3, type: .histogram, name: "swift_task_duration_seconds", help: "Lifetime.", bounds: [0.001, 0.01, 1]),
    ]

    @Test func everyKindRoundTrips() throws {
        let frames: [Frame] = [
            .hello(Self.hello),
            .declare(Self.declarations),
            .values([ValueUpdate(id: 1, value: 3), ValueUpdate(id: 2, value: .infinity)]),
            .histograms([HistogramUpdate(id: 3, buckets: [1, 2, 3, 4], sum: 1.5)]),
            .peaks([PeakSample(id: 1, value: 17)]),
            .goodbye,
            .retire([2, 3, 70_000]),
        ]
        for frame in frames {
            let encoded = FrameEncoder.encode(frame)
            #expect(encoded.count == 1)
            #expect(try FrameDecoder.decode(encoded[0]) == frame)
        }
    }

    @Test func headerStartsWithMagicAndVersion() {
        let bytes = FrameEncoder.goodbye()
        #expect(bytes == [0x54, 0x57, 0x43, 0x48, 1, 6, 0, 0])
    }

    @Test func longListsSplitIntoFramesThatFit() throws {
        let updates = (0..<20_000).map { ValueUpdate(id: UInt32($0), value: Double($0)) }
        let frames = FrameEncoder.values(updates)
        #expect(frames.count > 1)
        var decoded: [ValueUpdate] = []
        for frame in frames {
            #expect(frame.count <= Wire.maxFrameSize)
            guard case .values(let part) = try FrameDecoder.decode(frame) else {
                Issue.record("wrong kind")
                return
            }
            decoded += part
        }
        #expect(decoded == updates)
    }

    @Test func manyDeclarationsSplitIntoFramesThatFit() throws {
        let declarations = (0..<3_000).map {
            SeriesDeclaration(
                id: UInt32($0), type: .counter, name: "app_requests_total", help: String(repeating: "h", count: 40),
                labels: [Label("route", "/v1/items/\($0)")])
        }
        let frames = FrameEncoder.declare(declarations)
        #expect(frames.count > 1)
        var decoded: [SeriesDeclaration] = []
        for frame in frames {
            #expect(frame.count <= Wire.maxFrameSize)
            if case .declare(let part) = try FrameDecoder.decode(frame) { decoded += part }
        }
        #expect(decoded == declarations)
    }
}

@Suite struct FrameRejectionTests {
    func reason(_ bytes: [UInt8]) -> WireError? {
        do {
            _ = try FrameDecoder.decode(bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test func everyTruncationIsRefused() {
        let frame = FrameEncoder.declare(FrameRoundTripTests.declarations)[0]
        for length in 0..<frame.count {
            #expect(reason(Array(frame.prefix(length))) != nil, "prefix \(length) accepted")
        }
    }

    @Test func headerProblemsHaveTheirOwnReasons() {
        var frame = FrameEncoder.goodbye()
        frame[0] = 0
        #expect(reason(frame) == .badMagic)
        frame = FrameEncoder.goodbye()
        frame[4] = 9
        #expect(reason(frame) == .unsupportedVersion)
        frame = FrameEncoder.goodbye()
        frame[5] = 77
        #expect(reason(frame) == .unknownKind)
        #expect(reason(FrameEncoder.goodbye() + [0]) == .trailingBytes)
        #expect(reason(Array(repeating: 0, count: Wire.maxFrameSize + 1)) == .oversize)
    }

    @Test func invalidUTF8IsRefused() {
        var writer = FrameWriter(kind: .hello)
        writer.append(UInt32(1))
        writer.append(UInt64(1))
        writer.append(UInt16(2))
        var bytes = writer.bytes + [0xC3, 0x28]  // an invalid two-byte sequence
        bytes += [0, 0, 0, 0]  // empty version, zero labels
        #expect(reason(bytes) == .invalidUTF8)
    }

    @Test func unsortedOrNonFiniteBoundsAreRefused() {
        for bounds in [[1.0, 0.5], [1, .nan], [.infinity]] {
            let bytes = FrameEncoder.declare([
                SeriesDeclaration(id: 1, type: .histogram, name: "h", help: "", bounds: bounds)
            ])[0]
            #expect(reason(bytes) == .badBounds)
        }
        let gaugeWithBounds = FrameEncoder.declare([
            SeriesDeclaration(id: 1, type: .gauge, name: "g", help: "", bounds: [1])
        ])[0]
        #expect(reason(gaugeWithBounds) == .badBounds)
    }

    @Test func retireCountMustMatchBody() throws {
        var frame = FrameEncoder.retire([1, 2])[0]
        #expect(frame.count == Wire.headerSize + 2 + 8)
        frame[Wire.headerSize] = 3
        #expect(reason(frame) == .truncated)
        frame[Wire.headerSize] = 1
        #expect(reason(frame) == .trailingBytes)
        frame[Wire.headerSize] = 0
        #expect(reason(frame) == .empty)
        // 20,000 ids take two frames, each within the limit.
        let ids = (0..<20_000).map { UInt32($0) }
        let frames = FrameEncoder.retire(ids)
        #expect(frames.count == 2)
        #expect(frames.allSatisfy { $0.count <= Wire.maxFrameSize })
        var decoded: [UInt32] = []
        for bytes in frames {
            if case .retire(let part) = try FrameDecoder.decode(bytes) { decoded += part }
        }
        #expect(decoded == ids)
    }

    @Test func valuesCountMustMatchBody() {
        var frame = FrameEncoder.values([ValueUpdate(id: 1, value: 1)])[0]
        frame[Wire.headerSize] = 2
        #expect(reason(frame) == .truncated)
        frame[Wire.headerSize] = 0
        #expect(reason(frame) == .empty)
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let seeds =
            FrameEncoder.declare(FrameRoundTripTests.declarations) + [FrameEncoder.hello(FrameRoundTripTests.hello)]
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0..<200, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
            } else {
                // Mutate a valid frame so the decoder gets past the header.
                bytes = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
                        in: 0...255, using: &generator)
                }
            }
            _ = reason(bytes)
        }
    }
}

@Suite struct NameTests {
    @Test func validation() {
        #expect(Names.isValidMetricName("swift_tasks"))
        #expect(Names.isValidMetricName("a:b_c9"))
        #expect(!Names.isValidMetricName("9lives"))
        #expect(!Names.isValidMetricName(""))
        #expect(!Names.isValidMetricName("http.requests"))
        #expect(Names.isValidLabelName("task"))
        #expect(!Names.isValidLabelName("__name__"))
        #expect(!Names.isValidLabelName("a:b"))
    }

    @Test func sanitizing() {
        #expect(Names.sanitizeMetricName("http.requests-total") == "http_requests_total")
        #expect(Names.sanitizeMetricName("9lives") == "_9lives")
        #expect(Names.sanitizeMetricName("") == "_")
        #expect(Names.sanitizeLabelName("__secret") == "_secret")
        #expect(Names.sanitizeLabelName("a:b") == "a_b")
        #expect(Names.isValidLabelName(Names.sanitizeLabelName("ü")))
    }
}

@Suite struct DurationTextTests {
    @Test func parsesPrometheusDurations() {
        #expect(DurationText.nanoseconds("10ms") == 10_000_000)
        #expect(DurationText.nanoseconds("1.5s") == 1_500_000_000)
        #expect(DurationText.nanoseconds("2m") == 120_000_000_000)
        #expect(DurationText.nanoseconds("30s") == 30_000_000_000)
        #expect(DurationText.nanoseconds("0s") == 0)
        #expect(DurationText.nanoseconds("0") == 0)
        #expect(DurationText.nanoseconds("250us") == 250_000)
        for bad in ["", "s", "10", "-1s", "1x", "ms", "1e3s", "infs"] {
            #expect(DurationText.nanoseconds(bad) == nil, "\(bad)")
        }
        #expect(DurationText.format(nanoseconds: 10_000_000) == "10ms")
        #expect(DurationText.format(nanoseconds: 90_000_000_000) == "90s")
    }

    /// What Prometheus and Go accept as well: compound durations, in descending unit order, and the
    /// units `w` and `y` (365 days). Refused before: `--client.grace 1h30m` or `1w` stopped taskwatchd.
    @Test func parsesCompoundDurationsAndWeeksAndYears() {
        let second: UInt64 = 1_000_000_000
        #expect(DurationText.nanoseconds("1h30m") == 5_400 * second)
        #expect(DurationText.nanoseconds("1m30s") == 90 * second)
        #expect(DurationText.nanoseconds("1s500ms") == 1_500_000_000)
        #expect(DurationText.nanoseconds("1w") == 604_800 * second)
        #expect(DurationText.nanoseconds("1d") == 86_400 * second)
        #expect(DurationText.nanoseconds("1y") == 31_536_000 * second)
        #expect(DurationText.nanoseconds("90m") == 5_400 * second)
        #expect(DurationText.nanoseconds("1y2w3d4h5m6s7ms8us9ns") == 33_019_506_007_008_009)
        #expect(DurationText.nanoseconds("1ms500µs") == 1_500_000)
        #expect(DurationText.nanoseconds("2μs") == 2_000)
        #expect(DurationText.nanoseconds("0h0m0s") == 0)
        for bad in [
            "30m1h", "1s1m", "1m1m", "1us1µs", "1ms1s", "1h 30m", " 1s", "1s ", "1h-30m", "1h+30m", "h1",
            "1m30", "1hm", "1S", "1H", "+1s", "1_000s", "1.5.5s", ".s", "1.s5", "0.0", "00", "1h30", "1x1s",
        ] {
            #expect(DurationText.nanoseconds(bad) == nil, "\(bad)")
        }
    }

    /// Decimals stay accepted (a Go extension Prometheus lacks) in any part, computed exactly: digits
    /// below a nanosecond are cut off, never rounded up or lost to binary floating point.
    @Test func decimalsAreExact() {
        #expect(DurationText.nanoseconds(".5s") == 500_000_000)
        #expect(DurationText.nanoseconds("5.s") == 5_000_000_000)
        #expect(DurationText.nanoseconds("1.5h") == 5_400_000_000_000)
        #expect(DurationText.nanoseconds("1h0.5m") == 3_630_000_000_000)
        #expect(DurationText.nanoseconds("0.29s") == 290_000_000)
        #expect(DurationText.nanoseconds("0.29000000000000000000000s") == 290_000_000)
        #expect(DurationText.nanoseconds("0.123456789s") == 123_456_789)
        #expect(DurationText.nanoseconds("0.9999999999ns") == 0)
        #expect(DurationText.nanoseconds("1.5ns") == 1)
        #expect(DurationText.nanoseconds("0.1ms") == 100_000)
    }

    /// Nothing wraps: at most Int64.max nanoseconds (about 292 years, Go's time.Duration range), so a
    /// value fits a Duration and can be added to a clock reading.
    @Test func refusesDurationsPastTheLimit() {
        #expect(DurationText.nanoseconds("9223372036854775807ns") == UInt64(Int64.max))
        #expect(DurationText.nanoseconds("9223372036.854775807s") == UInt64(Int64.max))
        #expect(DurationText.nanoseconds("292y") == 9_208_512_000_000_000_000)
        #expect(DurationText.nanoseconds("292y1w") == 9_209_116_800_000_000_000)
        for bad in [
            "9223372036854775808ns", "18446744073709551616ns", "99999999999999999999999s", "293y", "292y52w",
            "9223372036s854775808ns", "5000000000h", "100000000000000000000000y", "9223372036.854775808s",
        ] {
            #expect(DurationText.nanoseconds(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct SocketLocationTests {
    @Test func followsTheContract() {
        #expect(SocketLocation.defaultPath(environment: [:], uid: 0) == "/run/taskwatch/ingest.sock")
        #expect(
            SocketLocation.defaultPath(environment: ["XDG_RUNTIME_DIR": "/run/user/1000"], uid: 1000)
                == "/run/user/1000/taskwatch/ingest.sock")
        #expect(SocketLocation.defaultPath(environment: [:], uid: 1000) == "/tmp/taskwatch-1000/ingest.sock")
        #expect(SocketLocation.clientPath(environment: ["TASKWATCH_SOCKET": "/x.sock"], uid: 0) == "/x.sock")
    }
}
