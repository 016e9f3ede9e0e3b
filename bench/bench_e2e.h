/* bench_e2e: seeding persons through the whole pipeline, shared by the
 * modes that need existing profiles (getprofile, consent).
 *
 * bench_seed_run sends o->events generated events (o->batch per Ingest
 * call) for o->people persons through ingestion and waits, with
 * bench_watch, until every person's profile shows every accepted event;
 * the watcher keeps each person's master id. */
#ifndef BENCH_E2E_H
#define BENCH_E2E_H

#include <stdint.h>
#include <uv.h>

#include "bench_driver.h"
#include "bench_ingest.h"
#include "bench_modes.h"
#include "bench_watch.h"

typedef struct {
    uv_loop_t *loop;
    bench_ingest in;
    bench_watch *watch;
    bench_drive_result drive;
    uint64_t t_acked_ns, t_visible_ns;
    int visible_ok;
} bench_seed;

/* Runs the loop until the seed events are sent and the profiles caught up
 * (or --timeout passed). Returns 0 when both phases ran (r->visible_ok
 * tells whether the profiles caught up in time), -1 when they could not
 * start. The caller frees r with bench_seed_free in both cases. */
int bench_seed_run(uv_loop_t *loop, cdp_rpc_channel *ingestion, cdp_rpc_channel *profile,
                   const bench_opts *o, bench_seed *r);
void bench_seed_free(bench_seed *r);

/* Copies the master ids the watcher saw into a malloc'd array of malloc'd
 * strings (*ids; the caller frees each and the array). Returns how many. */
uint32_t bench_seed_master_ids(const bench_seed *r, char ***ids);

#endif
