import Foundation
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// `docs/protocol.md` and `scripts/send-frames.py` (written from it alone) against the Swift encoder and
/// decoder: if the document drifts from the code, these fail.
@Suite struct ProtocolDocumentTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let script = packageRoot.appendingPathComponent("scripts/send-frames.py").path

    static let taskLabel = [Label("task", "default")]
    static let declarations = [
        SeriesDeclaration(
            id: 1, type: .gauge, name: "swift_tasks", help: "Live instrumented tasks now.", labels: taskLabel),
        SeriesDeclaration(
            id: 2, type: .counter, name: "swift_tasks_created_total", help: "Tasks started.", labels: taskLabel),
    ]

    /// Runs the script and returns its standard output and the process id it ran as.
    static func runScript(_ arguments: [String]) throws -> (output: String, pid: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return (String(decoding: data, as: UTF8.self), process.processIdentifier)
    }

    static func bytes(fromHex hex: some StringProtocol) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            if let byte = UInt8(hex[index..<next], radix: 16) { result.append(byte) }
            index = next
        }
        return result
    }

    @Test func pythonFramesAreByteForByteWhatTheSwiftEncoderWrites() throws {
        let (output, _) = try Self.runScript([
            "--hex", "--pid", "4242", "--process", "demo", "--interval-ms", "1000", "--tasks", "3", "--created", "10",
        ])
        let frames = output.split(separator: "\n").map { Self.bytes(fromHex: $0) }
        let hello = Hello(
            claimedPID: 4242, intervalNanoseconds: 1_000_000_000, process: "demo", clientVersion: "send-frames.py/1")
        let expected: [Frame] = [
            .hello(hello),
            .declare(Self.declarations),
            .values([ValueUpdate(id: 1, value: 3), ValueUpdate(id: 2, value: 10)]),
            .goodbye,
        ]
        #expect(frames.count == expected.count)
        for (bytes, frame) in zip(frames, expected) {
            #expect(try FrameDecoder.decode(bytes) == frame)
            #expect(bytes == FrameEncoder.encode(frame)[0])
        }
    }

    @Test func pythonSenderIsHeardByTheListenerWithItsKernelPid() throws {
        let running = try RunningListener()
        let (_, pid) = try Self.runScript([
            "--socket", running.path, "--process", "demo", "--tasks", "3", "--created", "10",
            "--hold", "0.25", "--interval-ms", "100",
        ])
        #expect(eventually { running.sink.closed.count == 1 })

        #expect(running.sink.opened.map(\.1.pid) == [pid])
        let decoded = try running.sink.frames.map { try FrameDecoder.decode($0.bytes) }
        let values = Frame.values([ValueUpdate(id: 1, value: 3), ValueUpdate(id: 2, value: 10)])
        #expect(decoded.count >= 5)
        guard case .hello(let hello) = decoded.first else {
            Issue.record("the first frame is not a hello")
            return
        }
        #expect(hello.process == "demo")
        #expect(hello.intervalNanoseconds == 100_000_000)
        #expect(decoded[1] == .declare(Self.declarations))
        #expect(decoded[2..<(decoded.count - 1)].allSatisfy { $0 == values })
        #expect(decoded.last == .goodbye)
    }

    @Test func hexDumpsInTheDocumentMatchTheEncoder() throws {
        let document = try String(
            contentsOf: Self.packageRoot.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        var dumps: [[UInt8]] = []
        var current: [UInt8]?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                if let finished = current, !finished.isEmpty { dumps.append(finished) }
                current = current == nil ? [] : nil
            } else if current != nil, line.count > 6, line.prefix(4).allSatisfy(\.isHexDigit) {
                // "OFFS  xx xx ...  ascii": the hex columns are the 47 characters after the offset.
                current! += line.dropFirst(6).prefix(47).split(separator: " ").compactMap { UInt8($0, radix: 16) }
            }
        }
        let expected: [Frame] = [
            .hello(Hello(claimedPID: 4242, intervalNanoseconds: 10_000_000, process: "demo", clientVersion: "0.1.0")),
            .declare([
                SeriesDeclaration(id: 1, type: .gauge, name: "swift_tasks", help: "Live tasks.", labels: Self.taskLabel)
            ]),
            .values([ValueUpdate(id: 1, value: 3), ValueUpdate(id: 2, value: 10)]),
            .histograms([HistogramUpdate(id: 3, buckets: [5, 2, 1], sum: 0.75)]),
        ]
        #expect(dumps.count == expected.count)
        for (dump, frame) in zip(dumps, expected) {
            #expect(dump == FrameEncoder.encode(frame)[0])
        }
        #expect(document.contains("`54 57 43 48 01 06 00 00`"))
        #expect(FrameEncoder.goodbye() == [0x54, 0x57, 0x43, 0x48, 0x01, 0x06, 0x00, 0x00])
        #expect(document.contains("`54 57 43 48 01 07 00 00 02 00 02 00 00 00 03 00 00 00`"))
        #expect(
            FrameEncoder.retire([2, 3]) == [
                [
                    0x54, 0x57, 0x43, 0x48, 0x01, 0x07, 0x00, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00,
                    0x00, 0x00,
                ]
            ])
    }

    @Test func everyWireErrorIsDocumented() throws {
        let document = try String(
            contentsOf: Self.packageRoot.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        for error in WireError.allCases {
            #expect(document.contains("| `\(error.rawValue)` |"), "\(error.rawValue) is not in docs/protocol.md")
        }
    }
}
