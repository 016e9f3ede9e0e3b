/* bench_ingest: the Ingest workload for bench_driver. Call number seq
 * carries events seq*batch .. seq*batch+batch-1 of the generator (the
 * driver builds calls in order), so each per-event result in the reply maps
 * back to the event, its person and whether it was sampled. */
#ifndef BENCH_INGEST_H
#define BENCH_INGEST_H

#include <stdint.h>

#include "bench_driver.h"
#include "bench_gen.h"

typedef struct {
    bench_gen gen;
    bench_batch batch;
    int per_call;
    uint64_t rejected, duplicates;
    char first_reject[BENCH_ERR_MAX];   /* "field: reason" of the first one */
    /* Optional: each accepted event, with its call's start and ack times. */
    void (*on_accepted)(void *ud, uint64_t event_seq, uint64_t t_start_ns, uint64_t t_ack_ns);
    void *accepted_ud;
} bench_ingest;

/* Returns 0 or -1 (out of memory). */
int bench_ingest_init(bench_ingest *in, const char *run, uint32_t people, uint32_t sample_every,
                      int batch);
void bench_ingest_free(bench_ingest *in);

/* Fills *w with the Ingest workload over `in`. */
void bench_ingest_workload(bench_ingest *in, bench_workload *w);

#endif
