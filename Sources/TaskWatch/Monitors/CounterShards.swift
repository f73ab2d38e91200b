import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A fixed set of counter slots, replicated in `shardCount` shards, each shard on its own cache lines.
///
/// Why sharding: every spawn and every completion bumps a counter. One shared atomic would bounce its
/// cache line between all cores spawning and finishing tasks; with shards picked by a hash of the
/// thread, concurrent threads mostly touch different lines and readers (the reporter, once per sample)
/// pay for summing instead.
@usableFromInline
final class CounterShards: @unchecked Sendable {
    // @unchecked: `base` is written only through atomics and freed only in deinit.

    /// A power of two, so the shard is picked with a shift.
    @usableFromInline static let shardCount = 16
    @usableFromInline static let shardShift: UInt64 = 60
    /// 32 slots of 8 bytes: 256 bytes, two cache-line pairs, so the adjacent-line prefetcher does not
    /// couple neighbouring shards either.
    @usableFromInline static let slotsPerShard = 32

    @usableFromInline let base: UnsafeMutablePointer<Atomic<UInt64>>

    init() {
        let count = Self.shardCount * Self.slotsPerShard
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 128)
        base = raw.bindMemory(to: Atomic<UInt64>.self, capacity: count)
        for index in 0..<count { (base + index).initialize(to: Atomic(0)) }
    }

    deinit {
        let count = Self.shardCount * Self.slotsPerShard
        base.deinitialize(count: count)
        UnsafeMutableRawPointer(base).deallocate()
    }

    /// The shard for the calling thread: a Fibonacci hash of `pthread_self()`, whose low bits are
    /// stack-aligned and useless on their own.
    @inlinable
    static func currentShard() -> Int {
        let thread = UInt64(truncatingIfNeeded: UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))))
        return Int(truncatingIfNeeded: (thread &* 0x9E37_79B9_7F4A_7C15) >> shardShift)
    }

    /// The sum of `slot` over every shard; not a snapshot, but each shard's value is monotonic.
    func sum(slot: Int) -> UInt64 {
        var total: UInt64 = 0
        for shard in 0..<Self.shardCount {
            // Sequentially consistent (a plain load on x86): the quiet reporter's check for spawns
            // after it set its flag relies on it; see `tw_reporter_is_idle`.
            total &+= (base + shard * Self.slotsPerShard + slot).pointee.load(ordering: .sequentiallyConsistent)
        }
        return total
    }
}
