/// Command-line options; each may also come from the environment (`DEMO_RATE`, `DEMO_LEAK`).
struct Options {
    /// Simulated requests per second.
    var rate = 200
    /// Leak one never-ending request task every `leakEvery` requests; 0 leaks nothing.
    var leakEvery = 0
    /// When set, measure spawn costs with this many tasks and exit.
    var benchmark: Int?

    static let usage = """
        usage: TaskWatchDemo [--rate N] [--leak N] [--bench N]
          --rate N   simulated requests per second (default 200, env DEMO_RATE)
          --leak N   leak one request task every N requests (default 0: none, env DEMO_LEAK)
          --bench N  compare Task with a monitored task over N spawns, then exit
        TaskWatch itself reads TASKWATCH_SOCKET, TASKWATCH_PROCESS, TASKWATCH_INTERVAL, TASKWATCH_DISABLED.
        """

    init(arguments: [String], environment: [String: String]) throws(OptionError) {
        // The environment is checked like the flags: a bad value is an error, not silently the default
        // (a negative rate used to start a demo that never sent a request).
        func number(_ text: String, _ name: String) throws(OptionError) -> Int {
            guard let value = Int(text), value >= 0 else {
                throw OptionError(message: "\(name) needs a non-negative number, not \(text)\n\(Self.usage)")
            }
            return value
        }
        if let text = environment["DEMO_RATE"] { rate = max(1, try number(text, "DEMO_RATE")) }
        if let text = environment["DEMO_LEAK"] { leakEvery = try number(text, "DEMO_LEAK") }
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            func value() throws(OptionError) -> Int {
                guard let text = iterator.next() else {
                    throw OptionError(message: "\(argument) needs a non-negative number\n\(Self.usage)")
                }
                return try number(text, argument)
            }
            switch argument {
            case "--rate": rate = max(1, try value())
            case "--leak": leakEvery = try value()
            case "--bench": benchmark = max(1, try value())
            case "--help", "-h": throw OptionError(message: Self.usage, isHelp: true)
            default: throw OptionError(message: "unknown option \(argument)\n\(Self.usage)")
            }
        }
    }
}

/// Why the demo does not run: a bad option (exit 2, on stderr), or `--help` (exit 0, on stdout).
struct OptionError: Error {
    var message: String
    var isHelp = false
}
