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
        if let rate = environment["DEMO_RATE"].flatMap(Int.init) { self.rate = rate }
        if let leak = environment["DEMO_LEAK"].flatMap(Int.init) { leakEvery = leak }
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            func number() throws(OptionError) -> Int {
                guard let text = iterator.next(), let value = Int(text), value >= 0 else {
                    throw OptionError(message: "\(argument) needs a non-negative number")
                }
                return value
            }
            switch argument {
            case "--rate": rate = max(1, try number())
            case "--leak": leakEvery = try number()
            case "--bench": benchmark = max(1, try number())
            case "--help", "-h": throw OptionError(message: Self.usage)
            default: throw OptionError(message: "unknown option \(argument)\n\(Self.usage)")
            }
        }
    }
}

struct OptionError: Error {
    var message: String
}
