import Foundation
import TaskWatchTestSupport
import Testing

@testable import TaskWatchDaemon

@Suite struct GzipTests {
    /// Decompresses with the system's gzip, an implementation independent of ours.
    func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let result = try runProcess("/usr/bin/gzip", ["-dc"], input: Data(bytes))
        try #require(result.status == 0, "gzip -d: \(result.errorOutput)")
        return Array(result.output)
    }

    @Test func emptyInputIsAValidMember() throws {
        let compressed = try Gzip.compress([])
        #expect(compressed.starts(with: [0x1F, 0x8B]))
        #expect(try gunzip(compressed) == [])
    }

    @Test(arguments: [0, 1, 6, 9] as [Int32])
    func roundTripsAtEveryLevel(_ level: Int32) throws {
        let text = Array(String(repeating: "swift_tasks{process=\"api\",task=\"default\"} 42\n", count: 500).utf8)
        let compressed = try Gzip.compress(text, level: level)
        #expect(try gunzip(compressed) == text)
        if level > 0 { #expect(compressed.count < text.count / 5) }
    }

    @Test func largeMetricLikeInput() throws {
        var text = ""
        text.reserveCapacity(12 << 20)
        var index = 0
        while text.utf8.count < 12 << 20 {
            text +=
                "swift_task_duration_seconds_bucket{process=\"p\(index % 97)\",pid=\"\(index)\",le=\"0.1\"} \(index)\n"
            index += 1
        }
        let input = Array(text.utf8)
        let clock = ContinuousClock()
        var compressed: [UInt8] = []
        let elapsed = try clock.measure { compressed = try Gzip.compress(input) }
        #expect(try gunzip(compressed) == input)
        // Generous for a debug build on a noisy machine; level 1 does this in tens of milliseconds.
        #expect(elapsed < .seconds(10))
    }

    @Test func incompressibleInputFitsTheBound() throws {
        var generator = SystemRandomNumberGenerator()
        let input = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let compressed = try Gzip.compress(input, level: 9)
        #expect(compressed.count > input.count)
        #expect(try gunzip(compressed) == input)
    }

    @Test func rawBufferOverload() throws {
        let input = Array("hello, gzip".utf8)
        let compressed = try input.withUnsafeBytes { try Gzip.compress($0) }
        #expect(try gunzip(compressed) == input)
    }

    @Test(arguments: [-1, 10] as [Int32])
    func invalidLevelThrows(_ level: Int32) {
        #expect(throws: GzipError.self) { try Gzip.compress([1, 2, 3], level: level) }
    }
}
