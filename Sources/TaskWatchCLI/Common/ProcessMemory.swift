import CTaskWatchRuntime
import Glibc

/// Memory figures of this process at one moment.
struct MemorySample: Sendable, Codable, Equatable {
    /// Resident set size from `/proc/self/statm`.
    var rssBytes: UInt64
    /// Allocator bytes in use (`mallinfo2`).
    var heapInUseBytes: UInt64
    /// Allocator bytes free but kept by the allocator.
    var heapFreeBytes: UInt64
}

/// Reads this process's memory. `heap` walks the allocator's free chunks: call it at most a few
/// times a second.
enum ProcessMemory {
    static let pageSize = UInt64(max(4_096, sysconf(Int32(_SC_PAGESIZE))))

    /// Resident bytes: the second field of `/proc/self/statm` times the page size.
    static func residentBytes() -> UInt64 {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return 0 }
        let fields = buffer[0..<count].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = UInt64(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
        return pages * pageSize
    }

    static func sample() -> MemorySample {
        let heap = tw_heap_stats_read()
        return MemorySample(
            rssBytes: residentBytes(), heapInUseBytes: heap.in_use_bytes, heapFreeBytes: heap.free_bytes)
    }

    /// `malloc_trim(0)`: returns free heap to the system. True if anything was released.
    @discardableResult
    static func trim() -> Bool { tw_heap_trim() != 0 }
}
