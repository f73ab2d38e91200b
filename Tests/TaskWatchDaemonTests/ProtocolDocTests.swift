import Foundation
import TaskWatchDaemon
import Testing

/// The reason tables of `docs/protocol.md` against the reason enums: every reason the daemon can count
/// is in the table of its counter, and no table lists a reason the daemon does not have.
@Suite struct ProtocolDocTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func document() throws -> String {
        try String(contentsOf: packageRoot.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
    }

    /// The first-column values of every table row in the one `###` section whose heading names
    /// `counter` in backticks, in document order. Nil when there is not exactly one such section.
    static func reasons(under counter: String, in document: String) -> [String]? {
        var sections: [[Substring]] = []
        var current: [Substring]?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("#") {
                if let finished = current { sections.append(finished) }
                current = line.hasPrefix("### ") && line.contains("`\(counter)`") ? [] : nil
            } else {
                current?.append(line)
            }
        }
        if let finished = current { sections.append(finished) }
        guard sections.count == 1 else { return nil }
        return sections[0].compactMap { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false)
            guard line.hasPrefix("|"), cells.count >= 3 else { return nil }
            let first = cells[1].trimmingCharacters(in: .whitespaces)
            guard first.count > 2, first.hasPrefix("`"), first.hasSuffix("`") else { return nil }
            return String(first.dropFirst().dropLast())
        }
    }

    static func check(_ counter: String, documents expected: [String]) throws {
        let listed = try #require(
            reasons(under: counter, in: try document()),
            "docs/protocol.md needs exactly one ### section naming `\(counter)`")
        #expect(Set(listed).count == listed.count, "a reason is listed twice for \(counter): \(listed)")
        let missing = Set(expected).subtracting(listed).sorted()
        let unknown = Set(listed).subtracting(expected).sorted()
        #expect(missing.isEmpty, "missing from the \(counter) table in docs/protocol.md: \(missing)")
        #expect(unknown.isEmpty, "listed for \(counter) in docs/protocol.md but not in the code: \(unknown)")
    }

    @Test func refusedFramesTableListsEveryFrameRejection() throws {
        try Self.check("taskwatch_messages_rejected_total", documents: FrameRejection.allCases.map(\.rawValue))
    }

    @Test func droppedSeriesTableListsEverySeriesRejection() throws {
        try Self.check("taskwatch_series_dropped_total", documents: SeriesRejection.allCases.map(\.rawValue))
    }

    @Test func droppedValuesTableListsEveryLimitADeclarationWaitsOn() throws {
        try Self.check(
            "taskwatch_values_dropped_total", documents: SeriesRejection.valueDroppingReasons.map(\.rawValue))
    }

    @Test func refusedClientsTableListsEveryClientRejection() throws {
        try Self.check("taskwatch_clients_rejected_total", documents: ClientRejection.allCases.map(\.rawValue))
    }

    @Test func disconnectThresholdIsTheRegistryDefault() throws {
        let threshold = RegistryLimits().maxConsecutiveRejections
        #expect(try Self.document().contains("**\(threshold) consecutive refused frames**"))
    }
}
