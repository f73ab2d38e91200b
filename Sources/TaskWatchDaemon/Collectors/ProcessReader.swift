import Glibc

/// What the kernel says about a process, read from `/proc/<pid>`.
struct ProcessStats: Equatable {
    var cpuSeconds: Double
    var threads: Int
    var startTicks: UInt64
    var startTimeSeconds: Double
    var virtualBytes: UInt64
    var residentBytes: UInt64
    /// Nil when `/proc/<pid>/fd` is not readable (another user's process without privilege).
    var openFDs: Int?
    var maxFDs: Int?
    /// The address-space limit (RLIMIT_AS); `UInt64.max` when unlimited. Only known for this process.
    var maxVirtualBytes: UInt64?
}

/// Reads `/proc` without Foundation, allocating little: scrapes read every client's files.
enum ProcessReader {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    static let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
    /// Boot time in seconds since the epoch, from `/proc/stat`'s `btime`.
    static let bootTime: Double = {
        guard let text = readFile("/proc/stat") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: " ")) ?? 0
        }
        return 0
    }()

    /// The process start time in clock ticks since boot, or nil if the process is gone.
    static func startTicks(pid: Int32) -> UInt64? {
        guard let fields = statFields(pid: String(pid)) else { return nil }
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// The command name the kernel keeps for `pid` (`/proc/<pid>/comm`, at most 15 bytes), or nil if the
    /// process is gone.
    static func command(pid: Int32) -> String? {
        guard let text = readFile("/proc/\(pid)/comm") else { return nil }
        return text.last == "\n" ? String(text.dropLast()) : text
    }

    /// Reads stat, statm-equivalent fields and the fd count of `pid` ("self" for this process).
    static func stats(pid: String) -> ProcessStats? {
        guard let fields = statFields(pid: pid), fields.count > 21 else { return nil }
        // After the command name: field 0 is state, so the man page's field N is fields[N - 3].
        let utime = Double(fields[11]) ?? 0
        let stime = Double(fields[12]) ?? 0
        let startTicks = UInt64(fields[19]) ?? 0
        return ProcessStats(
            cpuSeconds: (utime + stime) / ticksPerSecond,
            threads: Int(fields[17]) ?? 0,
            startTicks: startTicks,
            startTimeSeconds: bootTime + Double(startTicks) / ticksPerSecond,
            virtualBytes: UInt64(fields[20]) ?? 0,
            residentBytes: (UInt64(fields[21]) ?? 0) * pageSize,
            openFDs: openDescriptors(pid: pid),
            maxFDs: maxOpenFiles(pid: pid),
            maxVirtualBytes: addressSpaceLimit(pid: pid)
        )
    }

    /// The fields of `/proc/<pid>/stat` after the parenthesised command name, which may hold spaces.
    private static func statFields(pid: String) -> [Substring]? {
        guard let text = readFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    private static func maxOpenFiles(pid: String) -> Int? {
        guard pid == "self" else { return nil }
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return limit.rlim_cur == rlim_t.max ? nil : Int(limit.rlim_cur)
    }

    /// RLIM_INFINITY is the largest rlim_t, so an unlimited address space reads as `UInt64.max`, which
    /// client_golang exposes as 1.8446744073709552e+19: dashboards built on it see the same value.
    private static func addressSpaceLimit(pid: String) -> UInt64? {
        guard pid == "self" else { return nil }
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0 else { return nil }
        return UInt64(limit.rlim_cur)
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while true {
            if total == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
        }
        return String(decoding: buffer[..<total], as: UTF8.self)
    }

    /// The number of open descriptors of `pid`, or nil when its `fd` directory is not ours to read.
    ///
    /// Why not just count the entries: a client with many descriptors (or many connections of one
    /// process, each read) made every scrape walk them all; a review stretched one scrape to 28 s.
    /// Since Linux 6.2 the directory's size is the count, at no cost; older kernels report 0 and are
    /// walked. Opening first keeps the old answer for processes we may not inspect.
    private static func openDescriptors(pid: String) -> Int? {
        let fd = open("/proc/\(pid)/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var status = stat()
        let size = fstat(fd, &status) == 0 ? Int(status.st_size) : 0
        guard size == 0, let directory = fdopendir(fd) else {
            close(fd)
            return size
        }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return count
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> Substring {
        var slice = self
        while slice.first == set { slice.removeFirst() }
        while slice.last == set { slice.removeLast() }
        return slice
    }
}
