#define _GNU_SOURCE
#include "CTaskWatchRuntime.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

tw_heap_stats tw_heap_stats_read(void) {
    struct mallinfo2 info = mallinfo2();
    tw_heap_stats stats = {.in_use_bytes = info.uordblks + info.hblkhd, .free_bytes = info.fordblks};
    return stats;
}

int tw_heap_trim(void) { return malloc_trim(0); }

int tw_name_current_thread(const char *name) { return pthread_setname_np(pthread_self(), name); }

// The Swift runtime's hook for jobs enqueued on the global executor. Both the hook and the original
// use the Swift calling convention, which C reaches through clang's `swiftcall` attribute.
typedef void (__attribute__((swiftcall)) *tw_enqueue_original)(void *job);
typedef void (__attribute__((swiftcall)) *tw_enqueue_hook)(void *job, tw_enqueue_original original);
extern tw_enqueue_hook swift_task_enqueueGlobal_hook;

static _Atomic uint64_t enqueue_count;
static tw_enqueue_hook previous_hook;
static atomic_flag installed = ATOMIC_FLAG_INIT;

static void __attribute__((swiftcall)) counting_hook(void *job, tw_enqueue_original original) {
    // Sequentially consistent, before the flag's load: see `tw_reporter_is_idle`.
    atomic_fetch_add_explicit(&enqueue_count, 1, memory_order_seq_cst);
    // Executor work while the reporter is quiet (a blocked pool, a timer firing) brings it back to
    // its normal cadence, probe included; one load when it is not quiet.
    if (tw_reporter_is_idle()) tw_reporter_wake();
    // With the release store of the hook in `tw_enqueue_hook_install`: a thread that runs this hook
    // reads the hook it replaced, not the null from before the install.
    tw_enqueue_hook previous = __atomic_load_n(&previous_hook, __ATOMIC_ACQUIRE);
    if (previous) {
        previous(job, original);
    } else {
        original(job);
    }
}

void tw_enqueue_hook_install(void) {
    if (atomic_flag_test_and_set(&installed)) return;
    // Other threads enqueue meanwhile: the replaced hook is stored before this one is published, or a
    // job could pass a hook installed earlier by.
    __atomic_store_n(&previous_hook, __atomic_load_n(&swift_task_enqueueGlobal_hook, __ATOMIC_ACQUIRE), __ATOMIC_RELAXED);
    __atomic_store_n(&swift_task_enqueueGlobal_hook, counting_hook, __ATOMIC_RELEASE);
}

uint64_t tw_enqueue_count(void) { return atomic_load_explicit(&enqueue_count, memory_order_seq_cst); }

// The quiet reporter's wake-up. Why a futex on a sequence and not a condition variable: the waker is a
// spawning thread, which must never block on a lock the reporter holds, and a sequence number makes a
// wake between `idle_begin` and the wait visible to the wait itself (FUTEX_WAIT fails at once when the
// word moved), so no wake-up is lost.
__attribute__((aligned(128))) uint32_t tw_reporter_idle_flag;
static __attribute__((aligned(128))) _Atomic uint32_t wake_sequence;

void tw_reporter_wake(void) {
    if (__atomic_exchange_n(&tw_reporter_idle_flag, 0, __ATOMIC_ACQ_REL) == 0) return;
    atomic_fetch_add_explicit(&wake_sequence, 1, memory_order_release);
    syscall(SYS_futex, &wake_sequence, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL, NULL, 0);
}

void tw_reporter_interrupt(void) {
    atomic_fetch_add_explicit(&wake_sequence, 1, memory_order_release);
    syscall(SYS_futex, &wake_sequence, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL, NULL, 0);
}

uint32_t tw_reporter_sequence(void) { return atomic_load_explicit(&wake_sequence, memory_order_acquire); }

uint32_t tw_reporter_idle_begin(uint32_t level) {
    uint32_t sequence = atomic_load_explicit(&wake_sequence, memory_order_acquire);
    // Sequentially consistent, so that the reporter's re-check of the counters after this store
    // cannot be ordered before it.
    __atomic_store_n(&tw_reporter_idle_flag, level, __ATOMIC_SEQ_CST);
    return sequence;
}

int tw_reporter_idle_wait(uint32_t sequence, uint64_t deadline_ns) {
    if (atomic_load_explicit(&wake_sequence, memory_order_acquire) != sequence) return 1;
    struct timespec deadline = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                                .tv_nsec = (long)(deadline_ns % 1000000000u)};
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, like the reporter's other sleeps.
    syscall(SYS_futex, &wake_sequence, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, sequence, &deadline, NULL,
            FUTEX_BITSET_MATCH_ANY);
    return atomic_load_explicit(&wake_sequence, memory_order_acquire) != sequence;
}
