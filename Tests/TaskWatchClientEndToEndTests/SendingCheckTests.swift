import Foundation
import TaskWatchTestSupport
import Testing

/// The monitored spawns are drop-in for `Task`, `Task.immediate` and `addImmediateTask` in what the
/// compiler refuses too: a closure that shares an actor's non-Sendable state with the new task is a
/// data race, and Swift 6 refuses it. A review found the monitored forms compiling such closures (their
/// `isolated` parameter for the caller's actor turned the `sending` check off). Each case is compiled
/// twice with the built module, once with the standard library's spawn and once with the monitored
/// one, and the two must be refused alike.
@Suite struct SendingCheckTests {
    /// Each case spawns through a placeholder; `racy` ones must be refused, the others compile.
    static let source = """
        import TaskWatch

        final class NonSendable { var value = 0; func poke() { value += 1 } }
        struct Failure: Error {}

        actor Holder {
            let state = NonSendable()

            func capturesState(_ monitor: TaskMonitor) -> Task<Void, Never> {
                @TASK@ { [state] in state.poke() }  // racy
            }

            func capturesStateThrowing(_ monitor: TaskMonitor) -> Task<Void, any Error> {
                @TASK@ { [state] in  // racy
                    state.poke()
                    throw Failure()
                }
            }

            func capturesAParameter(_ value: NonSendable, _ monitor: TaskMonitor) -> Task<Void, Never> {
                @TASK@ { value.poke() }  // racy
            }

            func capturesStateInAConcurrentImmediate(_ monitor: TaskMonitor) -> Task<Void, Never> {
                let state = self.state
                return @IMMEDIATE@ { @concurrent in state.poke() }  // racy
            }

            func capturesStateInAGroup(_ monitor: TaskMonitor) async {
                let state = self.state
                await withTaskGroup(of: Void.self) { group in
                    @GROUP@ { @concurrent in state.poke() }  // racy
                }
            }

            func usesSelf(_ monitor: TaskMonitor) -> Task<Void, Never> {
                @TASK@ { self.state.poke() }
            }

            func handsOverALocal(_ monitor: TaskMonitor) -> Task<Int, Never> {
                let local = NonSendable()
                return @TASK@ {
                    local.poke()
                    return local.value
                }
            }
        }
        """

    static let racyCases = 5

    /// Compiles `source` against the built `TaskWatch` module to SIL (where the region checks run); the
    /// compiler's exit status and diagnostics.
    func compile(_ source: String) throws -> ProcessResult {
        let binaries = URL(fileURLWithPath: builtExecutable("taskwatchd")).deletingLastPathComponent()
        let directory = ScratchDirectory()
        let file = directory.file("spawns.swift")
        try source.write(toFile: file, atomically: true, encoding: .utf8)
        var arguments = ["swiftc", "-emit-sil", "-o", "/dev/null", "-swift-version", "6"]
        arguments += ["-I", binaries.appendingPathComponent("Modules").path]
        for module in ["CTaskWatchRuntime", "CTaskWatchSocket"] {
            let map = binaries.appendingPathComponent("\(module).build/module.modulemap").path
            arguments += ["-Xcc", "-fmodule-map-file=\(map)"]
        }
        return try runProcess("/usr/bin/env", arguments + [file])
    }

    func refusedLines(_ result: ProcessResult) -> [Int] {
        result.errorOutput.split(separator: "\n").compactMap { line in
            guard line.contains("error: passing closure as a 'sending' parameter risks causing data races")
            else { return nil }
            return line.split(separator: ":").dropFirst().first.flatMap { Int($0) }
        }.sorted()
    }

    @Test func monitoredSpawnsRefuseWhatTheirStandardFormsRefuse() throws {
        let plain = try compile(
            Self.source.replacingOccurrences(of: "@TASK@", with: "Task")
                .replacingOccurrences(of: "@IMMEDIATE@", with: "Task.immediate")
                .replacingOccurrences(of: "@GROUP@", with: "group.addImmediateTask"))
        let monitored = try compile(
            Self.source.replacingOccurrences(of: "@TASK@", with: "monitor.task")
                .replacingOccurrences(of: "@IMMEDIATE@", with: "monitor.immediate")
                .replacingOccurrences(of: "@GROUP@", with: "group.addImmediateTask(monitor: monitor)"))
        let racy = Self.source.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            .filter { $0.element.hasSuffix("// racy") }.map { $0.offset + 1 }
        #expect(racy.count == Self.racyCases)
        // The standard forms show the harness works: every racy case refused, nothing else.
        #expect(refusedLines(plain) == racy, "\(plain.errorOutput)")
        #expect(refusedLines(monitored) == racy, "\(monitored.errorOutput)")
        // Nothing else refused either: the non-racy cases compile with the monitored forms.
        let otherErrors = monitored.errorOutput.split(separator: "\n").filter {
            $0.contains("error:") && !$0.contains("risks causing data races")
        }
        #expect(otherErrors.isEmpty, "\(monitored.errorOutput)")
    }
}
