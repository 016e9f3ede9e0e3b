/* bench_watch: waits until the profiles of a run's persons reflect every
 * event that ingestion accepted for them.
 *
 * The caller tells how many events each person should show; the watcher
 * reads GetProfile (by the person's user_id) in rounds, `interval_ms` apart.
 * While the pipeline is busy only `gate` evenly spread persons are read;
 * once all of them are complete every person is, and from then on each
 * round reads only the persons still short. So polling costs about
 * gate/interval calls per second while the pipeline works (its own load
 * stays small), and the completion time it reports is late by at most one
 * interval plus one full round. It keeps each person's master id for later
 * use. The signal is the contract itself (what a client of profile sees),
 * not a counter inside the pipeline. All on the loop thread. */
#ifndef BENCH_WATCH_H
#define BENCH_WATCH_H

#include <stdint.h>
#include <uv.h>

#include "bench_gen.h"
#include "cdp_rpc.h"

typedef struct bench_watch bench_watch;

typedef struct {
    int concurrency;     /* GetProfile calls in flight per round */
    int interval_ms;     /* pause between rounds */
    uint32_t gate;       /* persons read while busy; 0: all of them */
    int timeout_ms;      /* give up after this */
    int deadline_ms;     /* per call */
} bench_watch_opts;

/* Creates a watcher over gen's `people` persons, expecting 0 events each.
 * Returns NULL when out of memory. */
bench_watch *bench_watch_new(uv_loop_t *loop, cdp_rpc_channel *profile, const bench_gen *gen,
                             const bench_watch_opts *o);
void bench_watch_free(bench_watch *w);

/* Adds n expected events to person p. */
void bench_watch_expect(bench_watch *w, uint32_t p, int64_t n);

/* Starts the rounds; done(ud, ok) is called once, ok = 1 when every person
 * reached its count, 0 on timeout. */
void bench_watch_start(bench_watch *w, void (*done)(void *ud, int ok), void *ud);

/* Persons still short after the last round, rounds and calls made. */
uint32_t bench_watch_remaining(const bench_watch *w);
uint64_t bench_watch_rounds(const bench_watch *w);
uint64_t bench_watch_calls(const bench_watch *w);

/* The master id seen for person p ("" until seen). */
const char *bench_watch_master_id(const bench_watch *w, uint32_t p);

#endif
