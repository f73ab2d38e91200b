import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Reads the daemon's `/metrics` over loopback with plain HTTP/1.0, from a thread of its own.
enum MetricsPoller {
    struct Selector {
        let name: String
        let pid: Int32
        /// The `task` label's value; nil for process-wide series, which carry none.
        var task: String? = nil
    }

    /// The value of the `selector` series in an exposition text, or nil.
    static func value(_ selector: Selector, in text: String) -> Double? {
        let prefix = selector.name + "{"
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
            guard line.contains("pid=\"\(selector.pid)\""),
                selector.task.map({ line.contains("task=\"\($0)\"") }) ?? true,
                let space = line.lastIndex(of: " ")
            else { continue }
            return Double(line[line.index(after: space)...])
        }
        return nil
    }

    /// GET `path` from 127.0.0.1:`port`; nil on any failure.
    static func fetch(port: UInt16, path: String = "/metrics") -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            response += chunk[0..<count]
        }
        return String(decoding: response, as: UTF8.self)
    }

    /// Polls until `condition` holds on a fetched body or the timeout passes; the time it held, or nil.
    static func poll(
        port: UInt16, path: String = "/metrics", timeoutNanoseconds: UInt64, _ condition: (String) -> Bool
    ) -> UInt64? {
        let deadline = Measure.cpuNanoseconds(CLOCK_MONOTONIC) + timeoutNanoseconds
        while Measure.cpuNanoseconds(CLOCK_MONOTONIC) < deadline {
            if let text = fetch(port: port, path: path), condition(text) {
                return Measure.cpuNanoseconds(CLOCK_MONOTONIC)
            }
            usleep(1_000)
        }
        return nil
    }

    /// A thread that polls as fast as the daemon answers, noting when the series first exceeded zero
    /// and first reached `full`. Timestamps are taken after the response arrived: the latency measured
    /// includes one scrape.
    final class Watcher: @unchecked Sendable {
        // @unchecked: `thread` is touched only by start() and stop(), from the owning task.
        let port: UInt16
        let selector: Selector
        let full: Double
        let burstStart = Atomic<UInt64>(0)
        let firstSeen = Atomic<UInt64>(0)
        let fullSeen = Atomic<UInt64>(0)
        let stopRequested = Atomic<Bool>(false)
        private var thread: pthread_t?

        init(port: UInt16, selector: Selector, full: Double) {
            self.port = port
            self.selector = selector
            self.full = full
        }

        func start() {
            let context = Unmanaged.passRetained(self).toOpaque()
            var handle = pthread_t()
            let result = pthread_create(
                &handle, nil,
                { context in
                    guard let context else { return nil }
                    Unmanaged<Watcher>.fromOpaque(context).takeRetainedValue().run()
                    return nil
                }, context)
            if result == 0 { thread = handle } else { Unmanaged<Watcher>.fromOpaque(context).release() }
        }

        /// Stops the thread; returns when the burst was first seen and seen at full height (0: never).
        func stop() -> (UInt64, UInt64) {
            stopRequested.store(true, ordering: .releasing)
            if let thread { pthread_join(thread, nil) }
            thread = nil
            return (firstSeen.load(ordering: .acquiring), fullSeen.load(ordering: .acquiring))
        }

        private func run() {
            // Bounded by the caller's stop(), and by a minute in any case.
            let deadline = Measure.cpuNanoseconds(CLOCK_MONOTONIC) + 60_000_000_000
            while !stopRequested.load(ordering: .acquiring), Measure.cpuNanoseconds(CLOCK_MONOTONIC) < deadline {
                guard let text = MetricsPoller.fetch(port: port) else { continue }
                let now = Measure.cpuNanoseconds(CLOCK_MONOTONIC)
                guard burstStart.load(ordering: .acquiring) != 0, let value = MetricsPoller.value(selector, in: text)
                else { continue }
                if value > 0 && firstSeen.load(ordering: .relaxed) == 0 { firstSeen.store(now, ordering: .releasing) }
                if value >= full && fullSeen.load(ordering: .relaxed) == 0 {
                    fullSeen.store(now, ordering: .releasing)
                    return
                }
            }
        }
    }
}
