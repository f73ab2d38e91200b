import CTaskWatchRuntime
import SpawnPairs
import Synchronization
import TaskWatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What a spawned closure's captured state costs, against counting, in interleaved rounds: the evidence
/// for how a ticket could reach the spawn goal on one CPU.
///
/// Every side spawns 1,000 tasks that return their index and awaits them; each round runs a plain batch
/// and a candidate batch, the order alternating. The candidates:
/// - `ticket`: the library's `TaskTicket` (16 bytes captured, counted through its monitor);
/// - `captured16`: a plain spawn whose closure captures 16 more bytes, and counts nothing;
/// - `uncapturedCounting`: the ticket's counting (a sharded relaxed add at the spawn site; at the end
///   `Task.isCancelled` and a sharded releasing add) with nothing captured, as a ticket whose monitor is
///   known statically and whose lifetime is not timed would do;
/// - `uncapturedRuntimeCancel`: the same reading cancellation as the library does, through the
///   runtime's entry points without `Task.isCancelled`'s retain and release of the task;
/// - `uncapturedNoCancel`: the same without any cancellation read.
enum CaptureCost {
    /// Stand-in counters: 16 shards of 32 slots, as the library's `CounterShards`.
    nonisolated(unsafe) private static let shards: UnsafeMutablePointer<Atomic<UInt64>> = {
        let shards = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: 16 * 32)
        for index in 0..<(16 * 32) { (shards + index).initialize(to: Atomic(0)) }
        return shards
    }()

    /// The library's shard choice: a hash of the thread.
    @inline(__always)
    private static func shard() -> Int {
        let thread = UInt64(truncatingIfNeeded: UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))))
        return Int(truncatingIfNeeded: (thread &* 0x9E37_79B9_7F4A_7C15) >> 60) &* 32
    }

    enum Side: String, CaseIterable {
        case plain, ticket, captured16, uncapturedCounting, uncapturedRuntimeCancel, uncapturedNoCancel
    }

    static func batch(_ side: Side, _ count: Int, into tasks: inout [Task<Int, Never>]) async -> UInt64 {
        // The sides SpawnPairs already has are its own.
        switch side {
        case .plain: return await SpawnPairs.batch(.plainTask, count, into: &tasks)
        case .ticket: return await SpawnPairs.batch(.ticketTask, count, into: &tasks)
        case .captured16: return await SpawnPairs.batch(.ticketSized, count, into: &tasks)
        case .uncapturedCounting, .uncapturedRuntimeCancel, .uncapturedNoCancel: break
        }
        let start = SpawnPairs.now()
        switch side {
        case .uncapturedCounting:
            for index in 0..<count {
                (shards + shard()).pointee.add(1, ordering: .relaxed)
                tasks.append(
                    Task {
                        let slot = Task.isCancelled ? 2 : 1
                        (shards + shard() + slot).pointee.add(1, ordering: .releasing)
                        return index
                    })
            }
        case .uncapturedRuntimeCancel:
            for index in 0..<count {
                (shards + shard()).pointee.add(1, ordering: .relaxed)
                tasks.append(
                    Task {
                        let slot = tw_current_task_is_cancelled() != 0 ? 2 : 1
                        (shards + shard() + slot).pointee.add(1, ordering: .releasing)
                        return index
                    })
            }
        case .uncapturedNoCancel:
            for index in 0..<count {
                (shards + shard()).pointee.add(1, ordering: .relaxed)
                tasks.append(
                    Task {
                        (shards + shard() + 1).pointee.add(1, ordering: .releasing)
                        return index
                    })
            }
        default:
            break
        }
        var sum = 0
        for task in tasks { sum &+= await task.value }
        let elapsed = SpawnPairs.now() - start
        tasks.removeAll(keepingCapacity: true)
        precondition(sum == count * (count - 1) / 2, "a task returned the wrong value")
        return elapsed
    }

    /// `rounds` interleaved rounds per candidate, as one JSON object of median and quartile ratios.
    static func run(rounds: Int, batchSize: Int = 1_000) async -> String {
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(batchSize)
        for side in Side.allCases {
            for _ in 0..<20 {
                _ = await batch(side, batchSize, into: &tasks)
                _ = await batch(.plain, batchSize, into: &tasks)
            }
        }
        var fields: [String] = []
        for side in Side.allCases where side != .plain {
            var ratios: [Double] = []
            for round in 0..<rounds {
                let plain: UInt64
                let candidate: UInt64
                if round % 2 == 0 {
                    plain = await batch(.plain, batchSize, into: &tasks)
                    candidate = await batch(side, batchSize, into: &tasks)
                } else {
                    candidate = await batch(side, batchSize, into: &tasks)
                    plain = await batch(.plain, batchSize, into: &tasks)
                }
                ratios.append(Double(candidate) / Double(plain))
            }
            ratios.sort()
            fields.append(
                "\"\(side.rawValue)\":{\"median_ratio\":\(ratios[rounds / 2]),\"p25_ratio\":\(ratios[rounds / 4]),"
                    + "\"p75_ratio\":\(ratios[rounds * 3 / 4])}")
        }
        return "{\"rounds\":\(rounds),\"batch\":\(batchSize)," + fields.joined(separator: ",") + "}"
    }

    /// Nanoseconds per cancellation read in the current task, `Task.isCancelled` against the library's
    /// `tw_current_task_is_cancelled`, in `rounds` interleaved rounds of a million reads each: medians.
    static func cancelRead(rounds: Int, reads: Int = 1_000_000) -> String {
        var viaTask: [Double] = []
        var viaRuntime: [Double] = []
        var seen = 0
        for round in 0..<rounds {
            for side in round % 2 == 0 ? [false, true] : [true, false] {
                let start = SpawnPairs.now()
                if side {
                    for _ in 0..<reads where tw_current_task_is_cancelled() != 0 { seen &+= 1 }
                    viaRuntime.append(Double(SpawnPairs.now() - start) / Double(reads))
                } else {
                    for _ in 0..<reads where Task.isCancelled { seen &+= 1 }
                    viaTask.append(Double(SpawnPairs.now() - start) / Double(reads))
                }
            }
        }
        precondition(seen == 0, "the measuring task was cancelled")
        viaTask.sort()
        viaRuntime.sort()
        return "{\"rounds\":\(rounds),\"task_is_cancelled_ns\":\(viaTask[rounds / 2]),"
            + "\"runtime_entry_points_ns\":\(viaRuntime[rounds / 2])}"
    }
}
