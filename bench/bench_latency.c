/* bench_latency: event-to-profile latency under a steady offered load.
 *
 * Ingest calls of --batch events are offered at --rate events/s (open
 * loop) for --duration. Every --sample-every-th event belongs to a person
 * of its own; once ingestion acknowledges it, a probe polls GetProfile for
 * that person until total_events >= 1. Two figures per
 * sampled event: from its call's scheduled send to the first poll that
 * sees it (what a caller experiences), and from the ack to that poll (the
 * pipeline alone). A probe gives up after --timeout; those count as lost.
 *
 * Polls are --poll-ms apart while a probe is young, then 1/LATENCY_POLL_SHARE
 * of its age apart: the error stays under 5% of the figure, and an
 * overloaded pipeline (seconds behind) is not buried under ever more polls
 * from the very probes that measure it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"
#include "bench_ingest.h"
#include "bench_modes.h"
#include "cdp/v1/profile.pb-c.h"

enum {
    MS_PER_S = 1000,
    NS_PER_MS = 1000 * 1000,
    LATENCY_POLL_SHARE = 20,   /* poll interval at most 1/20 of the wait so far */
};

typedef struct latency_run {
    uv_loop_t *loop;
    cdp_rpc_channel *prf;
    bench_ingest in;
    const bench_opts *o;
    int pending, driver_done;
    uint64_t probes, lost, polls, poll_errors;
    bench_lat send_to_profile, ack_to_profile;
} latency_run;

typedef struct {
    latency_run *run;
    uint64_t t_send_ns, t_ack_ns;
    uv_timer_t timer;
    char uid[BENCH_ID_MAX];
} latency_probe;

/* ------------------------------------------------------------------ probes */

static void latency_maybe_finish(latency_run *r) {
    if (r->driver_done && r->pending == 0)
        uv_stop(r->loop);
}

static void latency_probe_closed(uv_handle_t *h) {
    latency_probe *p = h->data;
    latency_run *r = p->run;
    free(p);
    r->pending--;
    latency_maybe_finish(r);
}

static void latency_probe_end(latency_probe *p) {
    uv_close((uv_handle_t *)&p->timer, latency_probe_closed);
}

static void latency_poll(uv_timer_t *t);

static void latency_on_profile(grpc_status_code code, const char *details,
                               const ProtobufCMessage *resp, void *ud) {
    (void)details;
    latency_probe *p = ud;
    latency_run *r = p->run;
    uint64_t now = uv_hrtime();
    if (code == GRPC_STATUS_OK && ((const Cdp__V1__ProfileView *)resp)->total_events >= 1) {
        bench_lat_add_ns(&r->send_to_profile, now - p->t_send_ns);
        bench_lat_add_ns(&r->ack_to_profile, now > p->t_ack_ns ? now - p->t_ack_ns : 0);
        latency_probe_end(p);
        return;
    }
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_NOT_FOUND)
        r->poll_errors++;
    if (now - p->t_ack_ns > (uint64_t)r->o->timeout_s * MS_PER_S * NS_PER_MS) {
        r->lost++;
        latency_probe_end(p);
        return;
    }
    uint64_t waited_ms = (now - p->t_ack_ns) / NS_PER_MS;
    uint64_t next_ms = waited_ms / LATENCY_POLL_SHARE;
    if (next_ms < (uint64_t)r->o->poll_ms)
        next_ms = (uint64_t)r->o->poll_ms;
    uv_timer_start(&p->timer, latency_poll, next_ms, 0);
}

static void latency_poll(uv_timer_t *t) {
    latency_probe *p = t->data;
    Cdp__V1__Identifier id = CDP__V1__IDENTIFIER__INIT;
    id.type = "user_id";
    id.value = p->uid;
    Cdp__V1__GetProfileRequest req = CDP__V1__GET_PROFILE_REQUEST__INIT;
    req.identifier = &id;
    req.timeline_limit = 1;
    p->run->polls++;
    cdp_rpc_unary(p->run->prf, &cdp__v1__profile__descriptor, "GetProfile", &req.base,
                  p->run->o->deadline_ms, latency_on_profile, p);
}

/* An event was acknowledged: sampled ones get a probe, polled at once. */
static void latency_on_accepted(void *ud, uint64_t event_seq, uint64_t t_start_ns,
                                uint64_t t_ack_ns) {
    latency_run *r = ud;
    if (!bench_gen_is_sample(&r->in.gen, event_seq))
        return;
    latency_probe *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->run = r;
    p->t_send_ns = t_start_ns;
    p->t_ack_ns = t_ack_ns;
    bench_gen_sample_user_id(&r->in.gen, event_seq, p->uid, sizeof(p->uid));
    uv_timer_init(r->loop, &p->timer);
    p->timer.data = p;
    r->pending++;
    r->probes++;
    latency_poll(&p->timer);
}

static void latency_driver_done(void *ud) {
    latency_run *r = ud;
    r->driver_done = 1;
    latency_maybe_finish(r);
}

/* ------------------------------------------------------------------ mode */

static void latency_report(latency_run *r, bench_drive_result *d) {
    const bench_opts *o = r->o;
    double s = bench_drive_elapsed_s(d);
    bench_result("latency",
                 "rate=%.0f batch=%d events=%llu events_per_s=%.0f failed_calls=%llu late=%llu "
                 "sample_every=%u polls_per_s=%.0f "
                 "ingest_p50_ms=%.3f ingest_p99_ms=%.3f samples=%llu lost=%llu polls=%llu "
                 "poll_errors=%llu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f ack_p50_ms=%.3f "
                 "ack_p99_ms=%.3f error=\"%s%s\"",
                 o->rate, o->batch, (unsigned long long)d->units_ok,
                 s > 0 ? (double)d->units_ok / s : 0, (unsigned long long)d->failed,
                 (unsigned long long)d->late, o->sample_every,
                 s > 0 ? (double)r->polls / s : 0, bench_lat_quantile_ms(&d->lat, 0.5),
                 bench_lat_quantile_ms(&d->lat, 0.99), (unsigned long long)r->probes,
                 (unsigned long long)r->lost, (unsigned long long)r->polls,
                 (unsigned long long)r->poll_errors,
                 bench_lat_quantile_ms(&r->send_to_profile, 0.5),
                 bench_lat_quantile_ms(&r->send_to_profile, 0.9),
                 bench_lat_quantile_ms(&r->send_to_profile, 0.99),
                 bench_lat_quantile_ms(&r->send_to_profile, 1.0),
                 bench_lat_quantile_ms(&r->ack_to_profile, 0.5),
                 bench_lat_quantile_ms(&r->ack_to_profile, 0.99), d->first_error,
                 r->in.first_reject);
}

int bench_mode_latency(uv_loop_t *loop, const bench_opts *o) {
    latency_run r;
    memset(&r, 0, sizeof(r));
    r.loop = loop;
    r.o = o;
    bench_lat_init(&r.send_to_profile);
    bench_lat_init(&r.ack_to_profile);
    if (o->rate <= 0 || bench_ingest_init(&r.in, o->run_id, o->people, o->sample_every,
                                          o->batch) != 0)
        return 1;
    r.in.on_accepted = latency_on_accepted;
    r.in.accepted_ud = &r;
    cdp_rpc_channel *ing = cdp_rpc_channel_new(loop, o->target, NULL);
    r.prf = cdp_rpc_channel_new(loop, o->profile_target, NULL);
    bench_workload w;
    bench_ingest_workload(&r.in, &w);
    bench_drive_opts d = {.concurrency = o->concurrency, .rate = o->rate / o->batch,
                          .duration_ms = o->duration_s * MS_PER_S, .deadline_ms = o->deadline_ms,
                          .on_finished = latency_driver_done, .finished_ud = &r};
    bench_drive_result dr;
    int rc = bench_drive_start(loop, ing, &w, &d, &dr);
    if (rc == 0)
        uv_run(loop, UV_RUN_DEFAULT);
    latency_report(&r, &dr);
    rc = rc || r.send_to_profile.n == 0 || r.lost > 0 || dr.failed > 0;
    bench_drive_result_free(&dr);
    bench_lat_free(&r.send_to_profile);
    bench_lat_free(&r.ack_to_profile);
    bench_ingest_free(&r.in);
    cdp_rpc_channel_close(ing);
    cdp_rpc_channel_close(r.prf);
    return rc;
}
