#include "CTaskWatchRuntime.h"

#include <malloc.h>
#include <stdatomic.h>

tw_heap_stats tw_heap_stats_read(void) {
    struct mallinfo2 info = mallinfo2();
    tw_heap_stats stats = {.in_use_bytes = info.uordblks + info.hblkhd, .free_bytes = info.fordblks};
    return stats;
}

int tw_heap_trim(void) { return malloc_trim(0); }

// The Swift runtime's hook for jobs enqueued on the global executor. Both the hook and the original
// use the Swift calling convention, which C reaches through clang's `swiftcall` attribute.
typedef void (__attribute__((swiftcall)) *tw_enqueue_original)(void *job);
typedef void (__attribute__((swiftcall)) *tw_enqueue_hook)(void *job, tw_enqueue_original original);
extern tw_enqueue_hook swift_task_enqueueGlobal_hook;

static _Atomic uint64_t enqueue_count;
static tw_enqueue_hook previous_hook;
static atomic_flag installed = ATOMIC_FLAG_INIT;

static void __attribute__((swiftcall)) counting_hook(void *job, tw_enqueue_original original) {
    atomic_fetch_add_explicit(&enqueue_count, 1, memory_order_relaxed);
    if (previous_hook) {
        previous_hook(job, original);
    } else {
        original(job);
    }
}

void tw_enqueue_hook_install(void) {
    if (atomic_flag_test_and_set(&installed)) return;
    previous_hook = swift_task_enqueueGlobal_hook;
    swift_task_enqueueGlobal_hook = counting_hook;
}

uint64_t tw_enqueue_count(void) { return atomic_load_explicit(&enqueue_count, memory_order_relaxed); }
