import Foundation
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// Running out of descriptors changes the whole process, so the scenario runs alone in a child copy of
/// this test binary, where no other test can be hurt by the lowered limit.
@Suite struct DescriptorExhaustionTests {
    static let childVariable = "TASKWATCH_TEST_DESCRIPTOR_CHILD"

    @Test func listenerBacksOffAndRecoversWhenAcceptRunsOutOfDescriptors() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["--testing-library", "swift-testing", "--filter", "descriptorExhaustionScenario"]
        process.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: "1"]) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("descriptorExhaustionScenario() passed"), "\(text)")
    }

    @Test(.enabled(if: getenv(childVariable) != nil, "runs in the child that the test above starts"))
    func descriptorExhaustionScenario() throws {
        let running = try RunningListener(options: .init(acceptBackoff: .milliseconds(50)))
        let first = try Client(path: running.path)
        #expect(eventually { running.sink.opened.count == 1 })

        var limit = rlimit()
        getrlimit(fileLimitResource, &limit)
        let saved = limit
        limit.rlim_cur = 256
        #expect(setrlimit(fileLimitResource, &limit) == 0)
        defer {
            var restore = saved
            setrlimit(fileLimitResource, &restore)
        }
        var filler: [Int32] = []
        while true {
            let fd = dup(0)
            if fd < 0 { break }
            filler.append(fd)
        }
        #expect(errno == EMFILE)
        // One free slot: the client's socket takes it, so the listener's accept has none.
        close(filler.removeLast())
        let second = try Client(path: running.path)
        #expect(eventually { running.listener.acceptFailures > 0 })

        // Connected clients are still served while accepting is paused.
        #expect(first.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frameCount == 1 })

        for fd in filler { close(fd) }
        #expect(eventually { running.sink.opened.count == 2 })
        #expect(second.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frameCount == 2 })
    }
}

/// `RLIMIT_NOFILE` imports as an enum case on Glibc; `getrlimit` takes its raw value.
private let fileLimitResource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
