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

/// Installs the global-executor enqueue hook once, chaining to any hook installed before it.
void tw_enqueue_hook_install(void);

/// Jobs enqueued on the global concurrent executor since the hook was installed.
uint64_t tw_enqueue_count(void);

#endif
