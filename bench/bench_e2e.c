/* bench_e2e: the modes that need the whole pipeline.
 *
 * e2e: sends a fixed number of events in Ingest batches (as fast as the
 * concurrency allows, or at --rate), then waits until GetProfile shows, for
 * every person, as many events as ingestion accepted for it (bench_watch).
 * The figure is accepted events / (last profile complete - first send).
 *
 * getprofile: seeds people the same way, keeps the master ids the watcher
 * saw, then reads GetProfile by master id at full speed for --duration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"
#include "bench_e2e.h"
#include "bench_ingest.h"
#include "bench_modes.h"
#include "bench_watch.h"
#include "cdp/v1/profile.pb-c.h"

enum {
    MS_PER_S = 1000,
    E2E_WATCH_INTERVAL_MS = 20,   /* pause between rounds of GetProfile */
    E2E_WATCH_GATE = 16,          /* persons read while the pipeline works */
};
#define NS_PER_S 1e9


/* ------------------------------------------------------------------ seeding */

static void e2e_on_accepted(void *ud, uint64_t event_seq, uint64_t t_start_ns, uint64_t t_ack_ns) {
    (void)t_start_ns;
    (void)t_ack_ns;
    bench_seed *r = ud;
    bench_watch_expect(r->watch, bench_gen_person_of(&r->in.gen, event_seq), 1);
}

static void e2e_visible(void *ud, int ok) {
    bench_seed *r = ud;
    r->t_visible_ns = uv_hrtime();
    r->visible_ok = ok;
    uv_stop(r->loop);
}

static void e2e_acked(void *ud) {
    bench_seed *r = ud;
    r->t_acked_ns = uv_hrtime();
    bench_watch_start(r->watch, e2e_visible, r);
}

int bench_seed_run(uv_loop_t *loop, cdp_rpc_channel *ingestion, cdp_rpc_channel *profile,
                        const bench_opts *o, bench_seed *r) {
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    if (bench_ingest_init(&r->in, o->run_id, o->people, 0, o->batch) != 0)
        return -1;
    r->in.on_accepted = e2e_on_accepted;
    r->in.accepted_ud = r;
    bench_watch_opts wo = {.concurrency = o->concurrency, .interval_ms = E2E_WATCH_INTERVAL_MS,
                           .gate = E2E_WATCH_GATE,
                           .timeout_ms = o->timeout_s * MS_PER_S, .deadline_ms = o->deadline_ms};
    r->watch = bench_watch_new(loop, profile, &r->in.gen, &wo);
    if (!r->watch)
        return -1;
    bench_workload w;
    bench_ingest_workload(&r->in, &w);
    bench_drive_opts d = {
        .concurrency = o->concurrency,
        .rate = o->rate > 0 ? o->rate / o->batch : 0,
        .duration_ms = o->timeout_s * MS_PER_S,
        .max_calls = (o->events + (uint64_t)o->batch - 1) / (uint64_t)o->batch,
        .deadline_ms = o->deadline_ms,
        .on_finished = e2e_acked,
        .finished_ud = r,
    };
    if (bench_drive_start(loop, ingestion, &w, &d, &r->drive) != 0)
        return -1;
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

void bench_seed_free(bench_seed *r) {
    bench_watch_free(r->watch);
    bench_drive_result_free(&r->drive);
    bench_ingest_free(&r->in);
}

uint32_t bench_seed_master_ids(const bench_seed *r, char ***ids) {
    uint32_t people = r->in.gen.people, n = 0;
    *ids = calloc(people, sizeof(**ids));
    for (uint32_t p = 0; *ids && p < people; p++) {
        const char *id = bench_watch_master_id(r->watch, p);
        if (id[0] && ((*ids)[n] = strdup(id)))
            n++;
    }
    return n;
}

static double e2e_span_s(uint64_t from, uint64_t to) {
    return to > from ? (double)(to - from) / NS_PER_S : 0;
}

/* ------------------------------------------------------------------ e2e */

int bench_mode_e2e(uv_loop_t *loop, const bench_opts *o) {
    cdp_rpc_channel *ing = cdp_rpc_channel_new(loop, o->target, NULL);
    cdp_rpc_channel *prf = cdp_rpc_channel_new(loop, o->profile_target, NULL);
    bench_seed r;
    int rc = bench_seed_run(loop, ing, prf, o, &r);
    uint64_t t0 = r.drive.t_first_ns;
    double total_s = e2e_span_s(t0, r.t_visible_ns);
    double ack_s = e2e_span_s(t0, r.t_acked_ns);
    uint64_t accepted = r.drive.units_ok;
    bench_result("e2e",
                 "batch=%d events=%llu accepted=%llu failed_calls=%llu rejected=%llu "
                 "complete=%d e2e_events_per_s=%.0f ack_events_per_s=%.0f total_s=%.3f "
                 "ack_s=%.3f drain_s=%.3f ingest_p99_ms=%.3f watch_rounds=%llu "
                 "watch_calls=%llu short_people=%u error=\"%s%s\"",
                 o->batch, (unsigned long long)o->events, (unsigned long long)accepted,
                 (unsigned long long)r.drive.failed, (unsigned long long)r.in.rejected,
                 r.visible_ok, r.visible_ok && total_s > 0 ? (double)accepted / total_s : 0,
                 ack_s > 0 ? (double)accepted / ack_s : 0, total_s, ack_s,
                 e2e_span_s(r.t_acked_ns, r.t_visible_ns),
                 bench_lat_quantile_ms(&r.drive.lat, 0.99),
                 (unsigned long long)(r.watch ? bench_watch_rounds(r.watch) : 0),
                 (unsigned long long)(r.watch ? bench_watch_calls(r.watch) : 0),
                 r.watch ? bench_watch_remaining(r.watch) : o->people, r.drive.first_error,
                 r.in.first_reject);
    rc = rc || !r.visible_ok || accepted == 0;
    bench_seed_free(&r);
    cdp_rpc_channel_close(ing);
    cdp_rpc_channel_close(prf);
    return rc;
}

/* ------------------------------------------------------------------ getprofile */

typedef struct {
    Cdp__V1__GetProfileRequest req;
    char **ids;
    uint32_t n;
    uint64_t replies, reply_bytes;   /* packed size of the views read */
} getprofile_work;

static int getprofile_make(void *ud, uint64_t seq, const ProtobufCMessage **req) {
    getprofile_work *g = ud;
    cdp__v1__get_profile_request__init(&g->req);
    g->req.master_id = g->ids[seq % g->n];
    *req = &g->req.base;
    return 1;
}

static int getprofile_check(void *ud, uint64_t seq, const ProtobufCMessage *resp,
                            uint64_t t_start_ns, uint64_t t_end_ns) {
    getprofile_work *g = ud;
    (void)seq;
    (void)t_start_ns;
    (void)t_end_ns;
    g->replies++;
    g->reply_bytes += protobuf_c_message_get_packed_size(resp);
    return ((const Cdp__V1__ProfileView *)resp)->total_events > 0;
}

/* Copies the master ids the watcher saw. Returns how many, 0 on failure. */
static uint32_t getprofile_collect(const bench_seed *r, getprofile_work *g) {
    g->n = bench_seed_master_ids(r, &g->ids);
    return g->n;
}

static void getprofile_report(const getprofile_work *g, bench_drive_result *d, const char *why) {
    double s = bench_drive_elapsed_s(d);
    bench_result("getprofile",
                 "people=%u calls=%llu failed=%llu calls_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
                 "reply_bytes=%.0f error=\"%s%s\"",
                 g->n, (unsigned long long)d->units_ok, (unsigned long long)d->failed,
                 s > 0 ? (double)d->units_ok / s : 0, bench_lat_quantile_ms(&d->lat, 0.5),
                 bench_lat_quantile_ms(&d->lat, 0.99),
                 g->replies ? (double)g->reply_bytes / (double)g->replies : 0, why,
                 d->first_error);
}

int bench_mode_getprofile(uv_loop_t *loop, const bench_opts *o) {
    cdp_rpc_channel *ing = cdp_rpc_channel_new(loop, o->target, NULL);
    cdp_rpc_channel *prf = cdp_rpc_channel_new(loop, o->profile_target, NULL);
    bench_seed r;
    getprofile_work g;
    memset(&g, 0, sizeof(g));
    bench_drive_result d;
    memset(&d, 0, sizeof(d));
    int rc = 1;
    if (bench_seed_run(loop, ing, prf, o, &r) != 0 || !r.visible_ok) {
        getprofile_report(&g, &d, "seeding: profiles did not reflect the seed events; ");
    } else if (getprofile_collect(&r, &g) == 0) {
        getprofile_report(&g, &d, "seeding: no master id seen; ");
    } else {
        bench_workload w = {.svc = &cdp__v1__profile__descriptor, .method = "GetProfile",
                            .make = getprofile_make, .check = getprofile_check, .ud = &g};
        bench_drive_opts dopts = {.concurrency = o->concurrency,
                                  .duration_ms = o->duration_s * MS_PER_S,
                                  .deadline_ms = o->deadline_ms};
        if (bench_drive_start(loop, prf, &w, &dopts, &d) == 0)
            uv_run(loop, UV_RUN_DEFAULT);
        getprofile_report(&g, &d, "");
        rc = d.units_ok == 0 || d.failed > 0;
    }
    bench_drive_result_free(&d);
    for (uint32_t i = 0; i < g.n; i++)
        free(g.ids[i]);
    free(g.ids);
    bench_seed_free(&r);
    cdp_rpc_channel_close(ing);
    cdp_rpc_channel_close(prf);
    return rc;
}
