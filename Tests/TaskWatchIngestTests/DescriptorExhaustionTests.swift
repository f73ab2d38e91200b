import Foundation
import TaskWatchDaemon
import TaskWatchTestSupport
import TaskWatchWire
import Testing

/// The ingest listener when descriptors run out (see `runAloneInChildProcess`).
@Suite struct DescriptorExhaustionTests {
    static let childVariable = "TASKWATCH_TEST_DESCRIPTOR_CHILD"

    @Test func listenerBacksOffAndRecoversWhenAcceptRunsOutOfDescriptors() throws {
        let child = try runAloneInChildProcess("descriptorExhaustionScenario", enabledBy: Self.childVariable)
        #expect(child.passed, "\(child.output)")
    }

    @Test(.enabled(if: getenv(childVariable) != nil, "runs in the child that the test above starts"))
    func descriptorExhaustionScenario() throws {
        let running = try RunningListener(options: .init(acceptBackoff: .milliseconds(50)))
        let first = try Client(path: running.path)
        #expect(eventually { running.sink.opened.count == 1 })

        let exhaustion = DescriptorExhaustion()
        #expect(exhaustion.filled)
        let second = try Client(path: running.path)
        #expect(eventually { running.listener.acceptFailures > 0 })

        // Connected clients are still served while accepting is paused.
        #expect(first.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frameCount == 1 })

        exhaustion.release()
        #expect(eventually { running.sink.opened.count == 2 })
        #expect(second.send(Frame.goodbye.bytes) == 0)
        #expect(eventually { running.sink.frameCount == 2 })
    }
}
