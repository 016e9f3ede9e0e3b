/* bench_webhook: from an Ingest acknowledgement to the webhook it causes.
 *
 * Set-up: a receiver (bench_recv) listens on --listen; segmentation gets a
 * segment "bench-<run>" with the rule count("Bench Order") >= 1 and the
 * mode waits for its backfill to finish; activation gets a webhook
 * destination on entries to it, pointing at the receiver, with a secret.
 * Warm-up: every WEBHOOK_WARM_EVERY_MS one new person sends one "Bench
 * Order" until a webhook for one of them arrives (services load segments
 * and destinations on their own schedule; nothing is measured before the
 * whole chain has answered once). Set-up and warm-up together are bounded
 * by --timeout.
 *
 * Measurement: --rate events/s offered in Ingest calls of --batch (open
 * loop) for --duration; every --sample-every-th event is a "Bench Order"
 * of a person of its own, so each sampled event makes one new person
 * enter the segment and should cause exactly one webhook. Its latency is
 * the time the receiver read the webhook's last byte minus the time the
 * client read the acknowledgement of the Ingest call that carried it, both
 * on uv_hrtime in this one process (the receiver runs on the client's
 * loop). The webhook is matched to its event by the person's user_id in
 * the body's profile; every body's X-Cdp-Signature is verified (libsodium
 * HMAC-SHA256 over "<t>." + body, docs/activation.md). After the offered
 * load ends, the mode waits up to --timeout for the outstanding webhooks;
 * those that never come are lost. Finally the destination and the segment
 * are deleted. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"
#include "bench_ingest.h"
#include "bench_modes.h"
#include "bench_recv.h"
#include "cdp/v1/activation.pb-c.h"
#include "cdp/v1/segmentation.pb-c.h"
#include "cdp_config.h"
#include "cdp_service.h"

#define WEBHOOK_EVENT "Bench Order"
#define WEBHOOK_RULE "count(\"" WEBHOOK_EVENT "\") >= 1"
#define WEBHOOK_PATH "/bench-hook"

enum {
    MS_PER_S = 1000,
    NS_PER_MS = 1000 * 1000,
    WEBHOOK_WARM_EVERY_MS = 500,
    WEBHOOK_POLL_MS = 50,
    WEBHOOK_HOST_MAX = 256,
    WEBHOOK_NAME_MAX = 320,
    WEBHOOK_SAMPLE_SLACK = 16,
};

typedef enum { PH_SEGMENT, PH_BACKFILL, PH_DESTINATION, PH_WARM, PH_MEASURE, PH_DRAIN,
               PH_CLEANUP } webhook_phase;

typedef struct {
    uv_loop_t *loop;
    const bench_opts *o;
    cdp_rpc_channel *ing, *seg, *act;
    bench_recv *recv;
    bench_ingest in;                  /* the measured events */
    bench_gen warm_gen;               /* warm-up persons, one event each */
    bench_batch warm_batch;
    webhook_phase phase;
    uv_timer_t timer;
    uint64_t t_setup_ns, t_deadline_ns, t_ready_ns;
    char run_warm[BENCH_RUN_ID_MAX];
    char segment_id[WEBHOOK_NAME_MAX], dest_id[WEBHOOK_NAME_MAX];
    char url[WEBHOOK_NAME_MAX], secret[WEBHOOK_NAME_MAX];
    char prefix[WEBHOOK_NAME_MAX], warm_prefix[WEBHOOK_NAME_MAX];
    uint64_t cap, *ack_ns, *recv_ns;  /* per sampled event, by seq / sample_every */
    uint64_t acked, received, duplicates, strays, bad_signatures, early, warm_sent;
    int cleanups;
    bench_drive_result drive;
    bench_lat lat;
    char error[BENCH_ERR_MAX];
} webhook_run;

static void webhook_finish(webhook_run *r);

static void webhook_fail(webhook_run *r, const char *what, grpc_status_code code,
                         const char *details) {
    if (!r->error[0])
        snprintf(r->error, sizeof(r->error), "%s: status %d: %s", what, (int)code,
                 details ? details : "");
    webhook_finish(r);
}

/* ------------------------------------------------------------------ receiving */

/* 1 if header `sig` ("t=<digits>,v1=<64 hex>") signs body with the secret. */
static int webhook_signed(const webhook_run *r, const char *sig, const char *body, size_t len) {
    const char *comma = strchr(sig, ',');
    unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    size_t n = 0;
    if (strncmp(sig, "t=", 2) != 0 || !comma || strncmp(comma, ",v1=", 4) != 0 ||
        sodium_hex2bin(want, sizeof(want), comma + 4, strlen(comma + 4), NULL, &n, NULL) != 0 ||
        n != sizeof(want))
        return 0;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)r->secret, strlen(r->secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)sig + 2, (size_t)(comma - sig - 2));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, got);
    return sodium_memcmp(want, got, sizeof(got)) == 0;
}

/* The user_id in the body's profile ("" when there is none). */
static void webhook_user_id(const char *body, size_t len, char *out, size_t outlen) {
    out[0] = '\0';
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *ids = json_object_get(json_object_get(root, "profile"), "identifiers");
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id) {
        const char *type = json_string_value(json_object_get(id, "type"));
        const char *value = json_string_value(json_object_get(id, "value"));
        if (type && value && strcmp(type, "user_id") == 0) {
            snprintf(out, outlen, "%s", value);
            break;
        }
    }
    json_decref(root);
}

/* The sample index of a measured person's user_id, or -1. */
static int64_t webhook_sample_of(const webhook_run *r, const char *uid) {
    size_t n = strlen(r->prefix);
    if (strncmp(uid, r->prefix, n) != 0 || !uid[n] || strspn(uid + n, "0123456789") != strlen(uid + n))
        return -1;
    uint64_t seq = strtoull(uid + n, NULL, 10);
    if (!bench_gen_is_sample(&r->in.gen, seq) || seq / r->o->sample_every >= r->cap)
        return -1;
    return (int64_t)(seq / r->o->sample_every);
}

static void webhook_start_measure(webhook_run *r);

static void webhook_on_request(void *ud, const char *body, size_t len, const char *signature,
                               uint64_t t_arrival_ns) {
    webhook_run *r = ud;
    char uid[BENCH_ID_MAX];
    if (!webhook_signed(r, signature, body, len))
        r->bad_signatures++;
    webhook_user_id(body, len, uid, sizeof(uid));
    if (strncmp(uid, r->warm_prefix, strlen(r->warm_prefix)) == 0) {
        if (r->phase == PH_WARM)
            webhook_start_measure(r);
        return;
    }
    int64_t k = webhook_sample_of(r, uid);
    if (k < 0) {
        r->strays++;
    } else if (r->recv_ns[k]) {
        r->duplicates++;
    } else {
        r->recv_ns[k] = t_arrival_ns;
        r->received++;
    }
}

/* ------------------------------------------------------------------ measuring */

static void webhook_on_accepted(void *ud, uint64_t event_seq, uint64_t t_start_ns,
                                uint64_t t_ack_ns) {
    (void)t_start_ns;
    webhook_run *r = ud;
    if (!bench_gen_is_sample(&r->in.gen, event_seq))
        return;
    uint64_t k = event_seq / r->o->sample_every;
    if (k < r->cap && !r->ack_ns[k]) {
        r->ack_ns[k] = t_ack_ns;
        r->acked++;
    }
}

static void webhook_drain_tick(uv_timer_t *t) {
    webhook_run *r = t->data;
    if (r->received >= r->acked || uv_hrtime() >= r->t_deadline_ns)
        webhook_finish(r);
}

static void webhook_driver_done(void *ud) {
    webhook_run *r = ud;
    r->phase = PH_DRAIN;
    r->t_deadline_ns = uv_hrtime() + (uint64_t)r->o->timeout_s * MS_PER_S * NS_PER_MS;
    uv_timer_start(&r->timer, webhook_drain_tick, WEBHOOK_POLL_MS, WEBHOOK_POLL_MS);
}

static void webhook_start_measure(webhook_run *r) {
    r->phase = PH_MEASURE;
    r->t_ready_ns = uv_hrtime();
    uv_timer_stop(&r->timer);
    bench_workload w;
    bench_ingest_workload(&r->in, &w);
    const bench_opts *o = r->o;
    bench_drive_opts d = {.concurrency = o->concurrency, .rate = o->rate / o->batch,
                          .duration_ms = o->duration_s * MS_PER_S, .deadline_ms = o->deadline_ms,
                          .on_finished = webhook_driver_done, .finished_ud = r};
    if (bench_drive_start(r->loop, r->ing, &w, &d, &r->drive) != 0)
        webhook_fail(r, "driver", GRPC_STATUS_INVALID_ARGUMENT, "bad options");
}

/* ------------------------------------------------------------------ warm-up */

static void webhook_warm_reply(grpc_status_code code, const char *details,
                               const ProtobufCMessage *resp, void *ud) {
    (void)resp;
    webhook_run *r = ud;
    if (code != GRPC_STATUS_OK && r->phase == PH_WARM)
        webhook_fail(r, "warm-up Ingest", code, details);
}

static void webhook_warm_tick(uv_timer_t *t) {
    webhook_run *r = t->data;
    if (uv_hrtime() >= r->t_deadline_ns) {
        webhook_fail(r, "warm-up", GRPC_STATUS_DEADLINE_EXCEEDED,
                     "no webhook arrived for a warm-up person within --timeout");
        return;
    }
    bench_gen_fill(&r->warm_gen, &r->warm_batch, 1, cdp_now_ms());
    r->warm_sent++;
    cdp_rpc_unary(r->ing, &cdp__v1__ingestion__descriptor, "Ingest", &r->warm_batch.req.base,
                  r->o->deadline_ms, webhook_warm_reply, r);
}

/* ------------------------------------------------------------------ set-up */

static void webhook_destination_made(grpc_status_code code, const char *details,
                                     const ProtobufCMessage *resp, void *ud) {
    webhook_run *r = ud;
    if (code != GRPC_STATUS_OK) {
        webhook_fail(r, "CreateDestination", code, details);
        return;
    }
    snprintf(r->dest_id, sizeof(r->dest_id), "%s", ((const Cdp__V1__Destination *)resp)->id);
    r->phase = PH_WARM;
    uv_timer_start(&r->timer, webhook_warm_tick, 0, WEBHOOK_WARM_EVERY_MS);
}

static void webhook_make_destination(webhook_run *r) {
    r->phase = PH_DESTINATION;
    Cdp__V1__Trigger trig = CDP__V1__TRIGGER__INIT;
    Cdp__V1__Trigger *trigs[1] = {&trig};
    trig.on = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
    trig.segment_id = r->segment_id;
    Cdp__V1__Destination d = CDP__V1__DESTINATION__INIT;
    d.name = "bench webhook receiver";
    d.type = CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_WEBHOOK;
    d.url = r->url;
    d.secret = r->secret;
    d.purpose = "marketing";
    d.triggers = trigs;
    d.n_triggers = 1;
    Cdp__V1__CreateDestinationRequest req = CDP__V1__CREATE_DESTINATION_REQUEST__INIT;
    req.destination = &d;
    cdp_rpc_unary(r->act, &cdp__v1__activation__descriptor, "CreateDestination", &req.base,
                  r->o->deadline_ms, webhook_destination_made, r);
}

static void webhook_backfill_poll(uv_timer_t *t);

static void webhook_backfill_reply(grpc_status_code code, const char *details,
                                   const ProtobufCMessage *resp, void *ud) {
    webhook_run *r = ud;
    if (code != GRPC_STATUS_OK) {
        webhook_fail(r, "GetBackfill", code, details);
        return;
    }
    const Cdp__V1__BackfillStatus *b = (const Cdp__V1__BackfillStatus *)resp;
    if (b->state == CDP__V1__BACKFILL_STATE__BACKFILL_STATE_DONE) {
        webhook_make_destination(r);
    } else if (b->state == CDP__V1__BACKFILL_STATE__BACKFILL_STATE_FAILED) {
        webhook_fail(r, "backfill", GRPC_STATUS_INTERNAL, b->error);
    } else if (uv_hrtime() >= r->t_deadline_ns) {
        webhook_fail(r, "backfill", GRPC_STATUS_DEADLINE_EXCEEDED, "not done within --timeout");
    } else {
        uv_timer_start(&r->timer, webhook_backfill_poll, WEBHOOK_POLL_MS, 0);
    }
}

static void webhook_backfill_poll(uv_timer_t *t) {
    webhook_run *r = t->data;
    Cdp__V1__GetBackfillRequest req = CDP__V1__GET_BACKFILL_REQUEST__INIT;
    req.segment_id = r->segment_id;
    cdp_rpc_unary(r->seg, &cdp__v1__segmentation__descriptor, "GetBackfill", &req.base,
                  r->o->deadline_ms, webhook_backfill_reply, r);
}

static void webhook_segment_made(grpc_status_code code, const char *details,
                                 const ProtobufCMessage *resp, void *ud) {
    webhook_run *r = ud;
    if (code != GRPC_STATUS_OK) {
        webhook_fail(r, "CreateSegment", code, details);
        return;
    }
    snprintf(r->segment_id, sizeof(r->segment_id), "%s", ((const Cdp__V1__Segment *)resp)->id);
    r->phase = PH_BACKFILL;
    webhook_backfill_poll(&r->timer);
}

static void webhook_make_segment(webhook_run *r) {
    Cdp__V1__CreateSegmentRequest req = CDP__V1__CREATE_SEGMENT_REQUEST__INIT;
    req.id = r->segment_id;
    req.name = "bench: persons with a Bench Order";
    req.rule = WEBHOOK_RULE;
    cdp_rpc_unary(r->seg, &cdp__v1__segmentation__descriptor, "CreateSegment", &req.base,
                  r->o->deadline_ms, webhook_segment_made, r);
}

/* ------------------------------------------------------------------ clean-up */

static void webhook_cleaned(grpc_status_code code, const char *details,
                            const ProtobufCMessage *resp, void *ud) {
    (void)code;
    (void)details;
    (void)resp;
    webhook_run *r = ud;
    if (--r->cleanups == 0)
        uv_stop(r->loop);
}

/* Ends the run: deletes what set-up created, then stops the loop. Waits for
 * a driver still running (it calls webhook_driver_done, then here again). */
static void webhook_finish(webhook_run *r) {
    if (r->phase == PH_CLEANUP || r->phase == PH_MEASURE)
        return;
    r->phase = PH_CLEANUP;
    uv_timer_stop(&r->timer);
    r->cleanups = 1;   /* released below, so that no reply stops the loop early */
    if (r->dest_id[0]) {
        Cdp__V1__DeleteDestinationRequest d = CDP__V1__DELETE_DESTINATION_REQUEST__INIT;
        d.id = r->dest_id;
        r->cleanups++;
        cdp_rpc_unary(r->act, &cdp__v1__activation__descriptor, "DeleteDestination", &d.base,
                      r->o->deadline_ms, webhook_cleaned, r);
    }
    Cdp__V1__DeleteSegmentRequest s = CDP__V1__DELETE_SEGMENT_REQUEST__INIT;
    s.id = r->segment_id;
    r->cleanups++;
    cdp_rpc_unary(r->seg, &cdp__v1__segmentation__descriptor, "DeleteSegment", &s.base,
                  r->o->deadline_ms, webhook_cleaned, r);
    webhook_cleaned(GRPC_STATUS_OK, NULL, NULL, r);
}

/* ------------------------------------------------------------------ mode */

static void webhook_report(webhook_run *r) {
    for (uint64_t k = 0; k < r->cap; k++) {
        if (!r->ack_ns[k] || !r->recv_ns[k])
            continue;
        if (r->recv_ns[k] < r->ack_ns[k])
            r->early++;
        bench_lat_add_ns(&r->lat, r->recv_ns[k] > r->ack_ns[k] ? r->recv_ns[k] - r->ack_ns[k] : 0);
    }
    const bench_opts *o = r->o;
    bench_drive_result *d = &r->drive;
    double s = bench_drive_elapsed_s(d);
    uint64_t matched = r->lat.n;
    bench_result("webhook",
                 "rate=%.0f batch=%d events=%llu events_per_s=%.0f failed_calls=%llu late=%llu "
                 "sample_every=%u samples=%llu received=%llu lost=%llu duplicates=%llu "
                 "strays=%llu bad_signatures=%llu early=%llu refused=%llu warmup_events=%llu "
                 "setup_s=%.3f ingest_p50_ms=%.3f ingest_p99_ms=%.3f p50_ms=%.3f p90_ms=%.3f "
                 "p99_ms=%.3f max_ms=%.3f error=\"%s%s%s\"",
                 o->rate, o->batch, (unsigned long long)d->units_ok,
                 s > 0 ? (double)d->units_ok / s : 0, (unsigned long long)d->failed,
                 (unsigned long long)d->late, o->sample_every, (unsigned long long)r->acked,
                 (unsigned long long)r->received,
                 (unsigned long long)(r->acked > matched ? r->acked - matched : 0),
                 (unsigned long long)r->duplicates, (unsigned long long)r->strays,
                 (unsigned long long)r->bad_signatures, (unsigned long long)r->early,
                 (unsigned long long)(r->recv ? bench_recv_refused(r->recv) : 0),
                 (unsigned long long)r->warm_sent,
                 r->t_ready_ns > r->t_setup_ns ? (double)(r->t_ready_ns - r->t_setup_ns) / 1e9 : 0,
                 bench_lat_quantile_ms(&d->lat, 0.5), bench_lat_quantile_ms(&d->lat, 0.99),
                 bench_lat_quantile_ms(&r->lat, 0.5), bench_lat_quantile_ms(&r->lat, 0.9),
                 bench_lat_quantile_ms(&r->lat, 0.99), bench_lat_quantile_ms(&r->lat, 1.0),
                 r->error, d->first_error, r->in.first_reject);
}

static int webhook_init(webhook_run *r, uv_loop_t *loop, const bench_opts *o, char *host,
                        int *port) {
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    r->o = o;
    bench_lat_init(&r->lat);
    if (sodium_init() < 0 || o->rate <= 0 || !o->sample_every ||
        cdp_parse_hostport(o->listen, host, WEBHOOK_HOST_MAX, port) != 0)
        return -1;
    r->cap = (uint64_t)(o->rate * o->duration_s) / o->sample_every + (uint64_t)o->batch +
             WEBHOOK_SAMPLE_SLACK;
    r->ack_ns = calloc(r->cap, sizeof(*r->ack_ns));
    r->recv_ns = calloc(r->cap, sizeof(*r->recv_ns));
    if (!r->ack_ns || !r->recv_ns ||
        bench_ingest_init(&r->in, o->run_id, o->people, o->sample_every, o->batch) != 0 ||
        bench_batch_init(&r->warm_batch, 1) != 0)
        return -1;
    r->in.gen.sample_event = WEBHOOK_EVENT;
    r->in.on_accepted = webhook_on_accepted;
    r->in.accepted_ud = r;
    /* Warm-up persons: run id + "w", every event sampled (a person of its own). */
    snprintf(r->run_warm, sizeof(r->run_warm), "%.*sw", BENCH_RUN_ID_MAX - 2, o->run_id);
    bench_gen_init(&r->warm_gen, r->run_warm, 1, 1);
    r->warm_gen.sample_event = WEBHOOK_EVENT;
    char probe[BENCH_ID_MAX];
    bench_gen_sample_user_id(&r->in.gen, 0, probe, sizeof(probe));
    snprintf(r->prefix, sizeof(r->prefix), "%.*s", (int)(strlen(probe) - 1), probe);
    bench_gen_sample_user_id(&r->warm_gen, 0, probe, sizeof(probe));
    snprintf(r->warm_prefix, sizeof(r->warm_prefix), "%.*s", (int)(strlen(probe) - 1), probe);
    snprintf(r->segment_id, sizeof(r->segment_id), "bench-%s", o->run_id);
    snprintf(r->secret, sizeof(r->secret), "bench-secret-%s", o->run_id);
    snprintf(r->url, sizeof(r->url), "http://%s:%d" WEBHOOK_PATH, host, *port);
    return 0;
}

static void webhook_free(webhook_run *r) {
    bench_drive_result_free(&r->drive);
    bench_lat_free(&r->lat);
    bench_ingest_free(&r->in);
    bench_batch_free(&r->warm_batch);
    free(r->ack_ns);
    free(r->recv_ns);
}

int bench_mode_webhook(uv_loop_t *loop, const bench_opts *o) {
    webhook_run r;
    char host[WEBHOOK_HOST_MAX];
    int port = 0;
    if (webhook_init(&r, loop, o, host, &port) != 0) {
        snprintf(r.error, sizeof(r.error), "bad options (--listen, --rate, --sample-every) "
                                           "or out of memory");
        webhook_report(&r);
        webhook_free(&r);
        return 1;
    }
    r.recv = bench_recv_start(loop, host, port, webhook_on_request, &r);
    if (!r.recv) {
        snprintf(r.error, sizeof(r.error), "cannot listen on %s", o->listen);
        webhook_report(&r);
        webhook_free(&r);
        return 1;
    }
    r.ing = cdp_rpc_channel_new(loop, o->target, NULL);
    r.seg = cdp_rpc_channel_new(loop, o->segmentation_target, NULL);
    r.act = cdp_rpc_channel_new(loop, o->activation_target, NULL);
    uv_timer_init(loop, &r.timer);
    r.timer.data = &r;
    r.t_setup_ns = uv_hrtime();
    r.t_deadline_ns = r.t_setup_ns + (uint64_t)o->timeout_s * MS_PER_S * NS_PER_MS;
    webhook_make_segment(&r);
    uv_run(loop, UV_RUN_DEFAULT);
    webhook_report(&r);
    int rc = r.error[0] || r.lat.n == 0 || r.received < r.acked || r.drive.failed > 0 ||
             r.bad_signatures > 0;
    bench_recv_stop(r.recv);
    uv_close((uv_handle_t *)&r.timer, NULL);
    cdp_rpc_channel_close(r.ing);
    cdp_rpc_channel_close(r.seg);
    cdp_rpc_channel_close(r.act);
    uv_run(loop, UV_RUN_NOWAIT);
    webhook_free(&r);
    return rc;
}
