import TaskWatchTestSupport
import Testing

@testable import TaskWatchCLI

/// Display widths: `top` fits its view to the terminal by the columns its text takes, not by its count
/// of characters, which a CJK or emoji name overflowed by up to twice.
@Suite struct CLIWidthTests {
    @Test(arguments: [
        ("", 0), ("abc", 3), ("µs …", 4), ("Ωмα", 3),
        // East Asian Wide and Fullwidth; halfwidth katakana stays narrow.
        ("中文", 4), ("かな", 4), ("한국", 4), ("Ａ１", 4), ("\u{3000}", 2), ("ｱｲ", 2),
        // Combining marks, format characters and joining jamo take no column of their own.
        ("e\u{301}", 1), ("a\u{200B}b", 2), ("\u{1100}\u{1161}\u{11A8}", 2), ("中\u{20DD}", 2),
        // Emoji drawn as emoji, with modifiers, joiners and flags: 2; a text-style symbol: 1.
        ("😀", 2), ("👍🏽", 2), ("👨‍👩‍👧", 2), ("🇫🇷", 2), ("☕", 2), ("❤", 1), ("❤️", 2), ("1️⃣", 2), ("☕\u{FE0E}", 1),
    ])
    func width(text: String, columns: Int) {
        #expect(Terminal.width(text) == columns, "\(text.unicodeScalars.map { String($0.value, radix: 16) })")
    }

    @Test func aLineIsCutToTheColumnsItTakes() {
        let text = "进程名称很长\nab😀cd\nplain text"
        #expect(Terminal.fit(text, columns: 5, rows: nil) == "进程\nab😀c\nplain")
        // A wide character that would straddle the edge is left out whole.
        #expect(Terminal.fit(text, columns: 4, rows: nil) == "进程\nab😀\nplai")
        #expect(Terminal.fit(text, columns: 3, rows: nil) == "进\nab\npla")
        #expect(Terminal.fit(text, columns: 1, rows: nil) == "\na\np")
    }

    /// `top`'s table of a process and a task named in CJK and emoji, and one named in ASCII.
    static func wideTable() -> String {
        let text = """
            swift_tasks{process="数据处理服务",pid="7",task="🚀启动任务"} 3
            taskwatch_client_up{process="数据处理服务",pid="7"} 1
            swift_tasks{process="ascii",pid="8",task="t"} 1
            taskwatch_client_up{process="ascii",pid="8"} 1
            """
        let rows = ClientTable.rows(
            previous: nil, current: MetricsSnapshot(nanoseconds: 1, samples: PrometheusText.parse(text)))
        return ClientTable.render(ClientTable.sorted(rows, by: .process))
    }

    /// Every line of the table fits a terminal's width.
    @Test func topsViewOfWideNamesFitsTheTerminal() {
        let table = Self.wideTable()
        for columns in [20, 31, 40, 60] {
            let lines = Terminal.fit(table, columns: columns, rows: nil).split(separator: "\n")
            #expect(lines.count == 3)
            #expect(lines.allSatisfy { Terminal.width($0) <= columns }, "\(columns): \(lines)")
            #expect(lines.contains { Terminal.width($0) >= columns - 1 }, "\(columns): \(lines)")
        }
    }

    /// Padded by display width, every row is as wide as the header and each column starts where its
    /// header does: padded by characters, the wide name pushed the rest of its row six columns right.
    @Test func topsColumnsStayAlignedAfterAWideName() {
        let lines = Self.wideTable().split(separator: "\n").map(String.init)
        #expect(Set(lines.map { Terminal.width($0) }).count == 1, "\(lines)")
        let pidColumn = Terminal.width(lines[0].prefix { $0 != "I" }) - 1
        let pids = lines.map { line in
            line.dropFirst(Terminal.prefix(line, columns: pidColumn).count).prefix(5)
        }
        #expect(pids == ["PID  ", "8    ", "7    "], "\(lines)")
    }
}
