import Foundation
import Glibc

/// Running out of descriptors changes the whole process, so such a scenario runs alone in a child copy
/// of the test binary, where no other test can be hurt by the lowered limit. The scenario is a test
/// enabled only when `variable` is set; this runs it in the child with `variable` set and returns the
/// child's output and whether the scenario passed.
public func runAloneInChildProcess(
    _ scenario: String, enabledBy variable: String
) throws -> (
    passed: Bool, output: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    process.arguments = ["--testing-library", "swift-testing", "--filter", scenario]
    process.environment = ProcessInfo.processInfo.environment.merging([variable: "1"]) { $1 }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    return (process.terminationStatus == 0 && text.contains("\(scenario)() passed"), text)
}

/// Lowers `RLIMIT_NOFILE` to `limit` and fills the descriptor table up to it but for one free slot.
/// `release()` frees the table; the limit comes back when this is deallocated. For a child process
/// started by `runAloneInChildProcess` only.
public final class DescriptorExhaustion {
    private var fillers: [Int32] = []
    private let saved: rlimit

    /// Whether the table was really full: the last `dup` failed with `EMFILE`.
    public let filled: Bool

    public init(limit: rlim_t = 256) {
        var current = rlimit()
        getrlimit(fileLimitResource, &current)
        saved = current
        current.rlim_cur = limit
        setrlimit(fileLimitResource, &current)
        while true {
            let fd = dup(0)
            if fd < 0 { break }
            fillers.append(fd)
        }
        filled = errno == EMFILE
        // One free slot: a client's socket can take it, and then the server's accept finds none.
        if let last = fillers.popLast() { close(last) }
    }

    /// Closes every filler descriptor.
    public func release() {
        for fd in fillers { close(fd) }
        fillers = []
    }

    deinit {
        release()
        var restore = saved
        setrlimit(fileLimitResource, &restore)
    }
}

/// `RLIMIT_NOFILE` imports as an enum case on Glibc; `getrlimit` takes its raw value.
private let fileLimitResource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
