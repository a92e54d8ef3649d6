/* mixgraph C core: the allocator every C file of the engine uses.
 *
 * All engine memory (plans, edges, rings, node blocks) comes from here, on
 * the control thread. Each call made on the audio thread is counted, so the
 * tests can prove the audio thread never allocates: mg_audio_enter() and
 * mg_audio_leave() bracket every mg_engine_process call. */
#ifndef MG_ALLOC_H
#define MG_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Zeroed memory with every page touched (no lazy zero-page faults later). */
void *mg_calloc(size_t n, size_t size);
void mg_free(void *p);
/* n * size bytes, not zeroed: for an array whose every element the caller
 * writes on the control thread before any other thread reads it (which also
 * touches its pages there). */
void *mg_malloc(size_t n, size_t size);
/* Zeroed whole cache lines for a node's block, from the node arena (2 MB
 * huge pages, see alloc.c); freed with mg_free_lines and the same size. */
void *mg_calloc_lines(size_t bytes);
void mg_free_lines(void *p, size_t bytes);
/* Bench: 0 makes later node blocks posix_memalign's, as before the arena. */
void mg_node_arena(int on);
/* Zeroed pages of their own mapping, away from the heap, for memory a node
 * rarely touches (ramp buffers, its own block buffers): keeps the hot node
 * blocks that run_plan walks close together. */
void *mg_cold_alloc(size_t bytes);
void mg_cold_free(void *p, size_t bytes);

/* The calling thread is (enter) / is no longer (leave) the audio thread. */
void mg_audio_enter(void);
void mg_audio_leave(void);
/* 1 on a thread inside mg_engine_process (the audio thread, a worker running
 * nodes): code that may be called there and elsewhere (a plugin's log:log)
 * takes its real-time path. */
int mg_audio_thread(void);
/* Allocator calls made on the audio thread since the library loaded. */
uint64_t mg_rt_alloc_count(void);

#endif
