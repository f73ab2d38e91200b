#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Nanoseconds on `CLOCK_MONOTONIC`: a vDSO read, cheap enough for the spawn path of sampled tasks.
@usableFromInline
enum MonotonicClock {
    @inlinable
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// CPU nanoseconds the calling thread has run: what its own work cost, without the time it was
    /// preempted, which on a busy machine would make the work look far dearer than it is.
    static func threadCPU() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}
