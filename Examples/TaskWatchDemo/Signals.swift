import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Set by SIGINT or SIGTERM. The handler lives outside `main.swift` because a closure written there is
/// main-actor isolated, and the runtime traps when the kernel calls it on another thread.
let stopRequested = Atomic<Bool>(false)

func installStopHandlers() {
    for signalNumber in [SIGINT, SIGTERM] {
        signal(signalNumber) { _ in stopRequested.store(true, ordering: .relaxed) }
    }
}
