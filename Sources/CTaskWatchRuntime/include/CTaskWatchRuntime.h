#ifndef CTASKWATCHRUNTIME_H
#define CTASKWATCHRUNTIME_H

#include <stddef.h>
#include <stdint.h>

/// Allocator statistics from glibc's `mallinfo2`, which Glibc's Swift module does not import.
/// Slow with many free chunks (it walks them under each arena's lock): call it at most once a second.
typedef struct {
    uint64_t in_use_bytes;
    uint64_t free_bytes;
} tw_heap_stats;

tw_heap_stats tw_heap_stats_read(void);

/// Returns free heap memory to the system (`malloc_trim(0)`). Returns 1 if memory was released.
int tw_heap_trim(void);

/// Names the calling thread (at most 15 bytes); 0 or an errno. Glibc declares `pthread_setname_np`
/// only under _GNU_SOURCE, which Swift's Glibc module does not set.
int tw_name_current_thread(const char *name);

/// Installs the global-executor enqueue hook once, chaining to any hook installed before it.
void tw_enqueue_hook_install(void);

/// Jobs enqueued on the global concurrent executor since the hook was installed.
uint64_t tw_enqueue_count(void);

/// Nonzero while some reporter is quiet and wants to hear of the next spawn or enqueued job (1, or
/// `TW_REPORTER_BACKED_OFF` when it also wants to hear of a changed swift-metrics value). Written
/// only on quiet/active transitions and read on every instrumented spawn and global enqueue, so it sits
/// on a cache line of its own: no hot counter shares it.
extern uint32_t tw_reporter_idle_flag;

/// Whether a reporter waits to be woken: one load, inlined into the spawn path.
///
/// Sequentially consistent, as are the counter adds before it and, on the reporter's side, the flag's
/// store and the counter loads after it. The two sides are a store-then-load handshake (the spawner
/// counts then reads the flag; the reporter sets the flag then reads the counts), which only rules
/// out both reading the old value when all four are: with weaker orders an ARM core may miss the wake
/// and the report waits up to a second. On x86 these are the same instructions as relaxed ones.
static inline int tw_reporter_is_idle(void) { return __atomic_load_n(&tw_reporter_idle_flag, __ATOMIC_SEQ_CST) != 0; }

/// `tw_reporter_idle_flag` of a quiet reporter that has also backed off (its next report is more than
/// one interval away) while connected to a daemon: the level at which a changed value of a report
/// source, not only a spawn or a job, is worth a wake-up.
#define TW_REPORTER_BACKED_OFF 2u

/// Whether a reporter has backed off and would report a changed value late: one load, for the
/// swift-metrics backend's updates (which then call `tw_reporter_wake`). Relaxed: unlike a spawn, an
/// update has no handshake with the reporter (it does not re-read every value before it sleeps), so an
/// update just before the flag is set waits for the next scheduled report, as all did before.
static inline int tw_reporter_is_backed_off(void) {
    return __atomic_load_n(&tw_reporter_idle_flag, __ATOMIC_RELAXED) == TW_REPORTER_BACKED_OFF;
}

/// The slow path after `tw_reporter_is_idle()` returned true: clears the flag and wakes every quiet
/// reporter. Of the many threads that may race here, only the one that clears the flag makes the
/// system call.
void tw_reporter_wake(void);

/// Announces that the calling reporter is going quiet: sets the flag to `level` (1, or
/// `TW_REPORTER_BACKED_OFF`) and returns the wake sequence to pass to `tw_reporter_idle_wait`, so a wake
/// that comes between the two is not lost.
uint32_t tw_reporter_idle_begin(uint32_t level);

/// Wakes the reporter from any `tw_reporter_idle_wait`, quiet or sub-sampling, whatever the idle flag:
/// for a stop or flush request, never for the spawn path (a syscall every time).
void tw_reporter_interrupt(void);

/// The current wake sequence, for a `tw_reporter_idle_wait` that only `tw_reporter_interrupt` (or a
/// quiet wake) ends: the sub-sampling sleep, which leaves the idle flag clear so spawns never wake it.
uint32_t tw_reporter_sequence(void);

/// Sleeps until `deadline_ns` on `CLOCK_MONOTONIC` or until a wake after `tw_reporter_idle_begin`
/// returned `sequence`. Returns 1 when woken (or already woken), 0 on the deadline or a signal.
int tw_reporter_idle_wait(uint32_t sequence, uint64_t deadline_ns);

/// The Swift runtime's own entry points behind `Task.isCancelled` (exported by libswift_Concurrency and
/// called by the standard library under these names), declared with the runtime's calling convention.
__attribute__((swiftcall)) extern void *swift_task_getCurrent(void);
__attribute__((swiftcall)) extern _Bool swift_task_isCancelled(void *task);

/// Whether the current task is cancelled; 0 outside a task. `Task.isCancelled` without its retain and
/// release of the task, two locked instructions: 8 ns a call against 12-13 here (`ClientMeasure
/// cancel-read`), on a read every instrumented task makes as it ends. Skipping them is safe because a
/// running task outlives its own code: nothing can free the current task while it runs this.
static inline int tw_current_task_is_cancelled(void) {
    void *task = swift_task_getCurrent();
    return task != 0 && swift_task_isCancelled(task);
}

/// A serial executor as the runtime passes it (`SerialExecutorRef`): the actor or executor object, and
/// the executor's witness table with flag bits. The two words an `UnownedSerialExecutor` holds.
typedef struct {
    const void *identity;
    uintptr_t implementation;
} tw_serial_executor_ref;

/// The runtime's entry point behind the check `Task.immediate` makes (exported by libswift_Concurrency and
/// called by the standard library under this name), declared with the runtime's calling convention. A
/// Swift `@_silgen_name` declaration of it clashes with the standard library's own.
__attribute__((swiftcall)) extern _Bool swift_task_isCurrentExecutorWithFlags(tw_serial_executor_ref executor,
                                                                              uint64_t flags);

/// Whether the caller runs on the executor `identity`/`implementation` (an `UnownedSerialExecutor`'s two
/// words): `Task.immediate`'s check before it starts a task on the calling thread, with its flags (0:
/// answer, never trap). For the counted `addImmediateTask`, whose group's own starts a child there
/// whatever its actor.
static inline int tw_is_current_executor(const void *identity, uintptr_t implementation) {
    tw_serial_executor_ref executor = {identity, implementation};
    return swift_task_isCurrentExecutorWithFlags(executor, 0);
}

#endif
