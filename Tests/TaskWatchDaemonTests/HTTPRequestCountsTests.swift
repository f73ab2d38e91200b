import Testing

@testable import TaskWatchDaemon

struct HTTPRequestCountsTests {
    @Test func servedPathsKeepTheirLabelAndEverythingElseIsOther() {
        let counts = HTTPRequestCounts(telemetryPath: "/custom")
        #expect(counts.handler(forPath: "/custom") == "/custom")
        #expect(counts.handler(forPath: "/") == "/")
        #expect(counts.handler(forPath: "/-/healthy") == "/-/healthy")
        #expect(counts.handler(forPath: "/-/ready") == "/-/ready")
        for path in ["/metrics", "/custom/", "/../etc/passwd", "", "/-/reload"] {
            #expect(counts.handler(forPath: path) == HTTPRequestCounts.otherHandler, "\(path)")
        }
    }

    @Test func successfulScrapesArePresentFromTheStart() {
        let counts = HTTPRequestCounts(telemetryPath: "/metrics")
        let snapshot = counts.snapshot()
        #expect(snapshot.count == 1)
        #expect(snapshot.first?.key == HTTPRequestCounts.Key(handler: "/metrics", code: 200))
        #expect(snapshot.first?.count == 0)
    }

    @Test func answersAddUpPerHandlerAndCodeInLabelOrder() {
        let counts = HTTPRequestCounts(telemetryPath: "/metrics")
        for path in ["/a", "/b", "/c"] { counts.count(path: path, status: 404) }
        counts.count(path: "/metrics", status: 401)
        counts.count(path: "/metrics", status: 200)
        counts.count(path: "/metrics", status: 200)
        counts.count(path: "/", status: 200)
        let rows = counts.snapshot().map { "\($0.key.handler) \($0.key.code) \($0.count)" }
        #expect(rows == ["/ 200 1", "/metrics 200 2", "/metrics 401 1", "other 404 3"])
    }

    @Test func concurrentAnswersAreNotLost() async {
        let counts = HTTPRequestCounts(telemetryPath: "/metrics")
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<10_000 { counts.count(path: "/metrics", status: 200) } }
            }
        }
        #expect(counts.snapshot().first?.count == 40_000)
    }
}
