import Synchronization

/// The spawn mode's tasks that may still run, so that a stop can cancel them: they are unstructured,
/// and nothing else reaches them. The submitter adds each task once spawned; its job marks it ended;
/// whichever comes second finds the other's mark, so a finished task is never held (a held handle keeps
/// the task's memory, and a `--duration` run has no end of them).
///
/// Built to stay out of what the run measures: a slot of 8 bytes per task in job order (jobs of one
/// hold end roughly in that order, so the ended ones are trimmed from the front), with the room for the
/// expected tasks reserved before the run's memory baseline. Sharded by runs of 64 jobs: the submitter
/// takes a lock per run of a batch, not per task, and the ending jobs spread over the shards.
final class SpawnedTasks: Sendable {
    private enum Slot {
        /// The job is submitted; its task is not added yet.
        case waiting
        case running(Task<Void, Never>)
        case ended
    }

    /// One shard's tasks: slot `i` holds the shard's job number `base + i`.
    private struct Shard {
        var slots: [Slot] = []
        var base = 0
        /// Every slot before this one has ended.
        var head = 0
        var cancelled = false

        /// The slot of job number `number`, made if need be; nil when it has ended and been trimmed.
        mutating func slot(_ number: Int) -> Int? {
            let index = number - base
            guard index >= 0 else { return nil }
            while slots.count <= index { slots.append(.waiting) }
            return index
        }

        /// Drops the ended slots at the front, once they are half of the storage (amortised O(1)).
        mutating func trim() {
            while head < slots.count, case .ended = slots[head] { head += 1 }
            if head >= 1_024, head * 2 >= slots.count {
                slots.removeFirst(head)
                base += head
                head = 0
            }
        }
    }

    private final class Box: Sendable {
        let shard: Mutex<Shard>

        init(reserving capacity: Int) {
            var shard = Shard()
            shard.slots.reserveCapacity(capacity)
            self.shard = Mutex(shard)
        }
    }

    private static let shardCount = 16
    private static let run = 64
    private let boxes: [Box]

    /// A table with room for `expected` tasks at once; more still fit, allocating as they come.
    init(expected: Int) {
        let perShard = max(0, expected) / Self.shardCount + Self.run
        boxes = (0..<Self.shardCount).map { _ in Box(reserving: perShard) }
    }

    /// The shard of `job` and its number there: runs of 64 consecutive jobs go to one shard in turn.
    private static func place(_ job: Int) -> (shard: Int, number: Int) {
        let runIndex = job / run
        return (runIndex % shardCount, runIndex / shardCount * run + job % run)
    }

    /// Takes every task of `batch`, leaving it empty, and keeps each until its job ends; cancels them at
    /// once after `cancelAll`. Moved out of the batch, not copied: a copy would cost each task's
    /// reference count two more atomic updates, on a line the task's own thread is using.
    func add(_ batch: inout [(job: Int, task: Task<Void, Never>)]) {
        var cancelled = false
        while let last = batch.last {
            let shardIndex = Self.place(last.job).shard
            cancelled =
                boxes[shardIndex].shard.withLock { shard -> Bool in
                    while let next = batch.last, Self.place(next.job).shard == shardIndex {
                        let (job, task) = batch.removeLast()
                        guard let index = shard.slot(Self.place(job).number) else { continue }
                        if case .waiting = shard.slots[index] { shard.slots[index] = .running(task) }
                    }
                    return shard.cancelled
                } || cancelled
        }
        // Added after a stop: cancelled like the others (cancelling one twice does nothing).
        if cancelled { cancelAll() }
    }

    /// Called by job `job` as it ends.
    func ended(_ job: Int) {
        let (shard, number) = Self.place(job)
        boxes[shard].shard.withLock { shard in
            guard let index = shard.slot(number) else { return }
            shard.slots[index] = .ended
            shard.trim()
        }
    }

    /// Cancels every task kept now and every one added from now on.
    func cancelAll() {
        for box in boxes {
            let tasks = box.shard.withLock { shard -> [Task<Void, Never>] in
                shard.cancelled = true
                return shard.slots.compactMap { slot in
                    if case .running(let task) = slot { return task }
                    return nil
                }
            }
            for task in tasks { task.cancel() }
        }
    }
}
