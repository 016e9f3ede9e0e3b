/* bench_consent: CheckConsent throughput over real profiles.
 *
 * Seeds --people persons through the pipeline (--events events, as the
 * getprofile mode does) and keeps their master ids; gives person i two
 * entries with SetConsent (marketing on email granted for even i, denied
 * for odd i; analytics on every channel granted); then, closed loop at
 * --concurrency for --duration each:
 *   1. CheckConsent by master id, cycling over three questions that each
 *      reach a different rule of the decision: marketing/email (explicit
 *      channel entry), analytics/sms (entry for every channel),
 *      personalization/push (no entry: the jurisdiction's default);
 *   2. CheckConsentBatch of --checks such questions per call.
 * Every answer is checked against what was set (rule, and allowed where
 * the entries decide it); a wrong one is counted and the first is named.
 * The RESULT line carries the packed sizes of requests and replies and the
 * echo payload that moves the same bytes per round trip ((request + reply)
 * / 2 each way), for bench/run's baseline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"
#include "bench_e2e.h"
#include "bench_modes.h"
#include "cdp/v1/consent.pb-c.h"

enum {
    MS_PER_S = 1000,
    CONSENT_N_QUESTIONS = 3,
    CONSENT_SIZE_EVERY = 16,   /* replies between two size samples */
    CONSENT_N_ENTRIES = 2,
};

/* A question and the rule that must decide it. allowed: 1 or 0 when the
 * entries decide it, -1 for "granted for even persons", -2 not checked
 * (the jurisdiction's default is configuration). */
static const struct {
    const char *purpose, *channel;
    Cdp__V1__DecisionRule rule;
    int allowed;
} consent_questions[CONSENT_N_QUESTIONS] = {
    {"marketing", "email", CDP__V1__DECISION_RULE__DECISION_RULE_EXPLICIT_CHANNEL, -1},
    {"analytics", "sms", CDP__V1__DECISION_RULE__DECISION_RULE_EXPLICIT_ALL_CHANNELS, 1},
    {"personalization", "push", CDP__V1__DECISION_RULE__DECISION_RULE_JURISDICTION_DEFAULT, -2},
};

typedef struct {
    uint64_t replies, sized, req_bytes, reply_bytes;
} consent_sizes;

typedef struct {
    char **ids;
    uint32_t n;
    int checks;
    Cdp__V1__SetConsentRequest set;
    Cdp__V1__ConsentEntry entries[CONSENT_N_ENTRIES];
    Cdp__V1__ConsentEntry *entry_ptrs[CONSENT_N_ENTRIES];
    Cdp__V1__CheckConsentRequest *reqs;      /* checks of them */
    Cdp__V1__CheckConsentRequest **req_ptrs;
    Cdp__V1__CheckConsentBatchRequest batch;
    consent_sizes *sizes;                    /* of the phase running */
    uint64_t wrong, set_short;
    char first_wrong[BENCH_ERR_MAX];
} consent_work;

/* ------------------------------------------------------------------ questions */

/* Question number k: person (k / 3) % n, question k % 3. */
static uint32_t consent_person(const consent_work *c, uint64_t k) {
    return (uint32_t)((k / CONSENT_N_QUESTIONS) % c->n);
}

static void consent_fill(const consent_work *c, Cdp__V1__CheckConsentRequest *r, uint64_t k) {
    cdp__v1__check_consent_request__init(r);
    r->master_id = c->ids[consent_person(c, k)];
    r->purpose = (char *)consent_questions[k % CONSENT_N_QUESTIONS].purpose;
    r->channel = (char *)consent_questions[k % CONSENT_N_QUESTIONS].channel;
    r->actor = "bench";
}

/* 1 if decision d answers question k as the entries say it must. */
static int consent_judge(consent_work *c, uint64_t k, const Cdp__V1__ConsentDecision *d) {
    size_t q = k % CONSENT_N_QUESTIONS;
    int want = consent_questions[q].allowed;
    if (want == -1)
        want = consent_person(c, k) % 2 == 0;
    if (d->rule == consent_questions[q].rule && (want == -2 || d->allowed == (want == 1)))
        return 1;
    c->wrong++;
    if (!c->first_wrong[0])
        snprintf(c->first_wrong, sizeof(c->first_wrong),
                 "%s/%s of person %u: rule %d allowed %d (%s); ", consent_questions[q].purpose,
                 consent_questions[q].channel, consent_person(c, k), (int)d->rule, d->allowed,
                 d->reason ? d->reason : "");
    return 0;
}

static void consent_size(consent_work *c, const ProtobufCMessage *req,
                         const ProtobufCMessage *resp, uint64_t seq) {
    c->sizes->replies++;
    if (seq % CONSENT_SIZE_EVERY)
        return;
    c->sizes->sized++;
    c->sizes->req_bytes += protobuf_c_message_get_packed_size(req);
    c->sizes->reply_bytes += protobuf_c_message_get_packed_size(resp);
}

/* ------------------------------------------------------------------ workloads */

static int consent_set_make(void *ud, uint64_t seq, const ProtobufCMessage **req) {
    consent_work *c = ud;
    cdp__v1__set_consent_request__init(&c->set);
    static const char *const purposes[CONSENT_N_ENTRIES] = {"marketing", "analytics"};
    static const char *const channels[CONSENT_N_ENTRIES] = {"email", "*"};
    for (int i = 0; i < CONSENT_N_ENTRIES; i++) {
        Cdp__V1__ConsentEntry *e = &c->entries[i];
        cdp__v1__consent_entry__init(e);
        e->purpose = (char *)purposes[i];
        e->channel = (char *)channels[i];
        e->status = i == 0 && seq % 2 ? CDP__V1__CONSENT_STATUS__CONSENT_STATUS_DENIED
                                      : CDP__V1__CONSENT_STATUS__CONSENT_STATUS_GRANTED;
        e->source = "api";
        e->legal_basis = "consent";
        c->entry_ptrs[i] = e;
    }
    c->set.master_id = c->ids[seq];
    c->set.entries = c->entry_ptrs;
    c->set.n_entries = CONSENT_N_ENTRIES;
    c->set.actor = "bench";
    *req = &c->set.base;
    return 1;
}

static int consent_set_check(void *ud, uint64_t seq, const ProtobufCMessage *resp,
                             uint64_t t_start_ns, uint64_t t_end_ns) {
    (void)seq;
    (void)t_start_ns;
    (void)t_end_ns;
    consent_work *c = ud;
    int ok = ((const Cdp__V1__ConsentState *)resp)->n_entries >= CONSENT_N_ENTRIES;
    c->set_short += !ok;
    return ok;
}

static int consent_check_make(void *ud, uint64_t seq, const ProtobufCMessage **req) {
    consent_work *c = ud;
    consent_fill(c, &c->reqs[0], seq);
    *req = &c->reqs[0].base;
    return 1;
}

static int consent_check_check(void *ud, uint64_t seq, const ProtobufCMessage *resp,
                               uint64_t t_start_ns, uint64_t t_end_ns) {
    (void)t_start_ns;
    (void)t_end_ns;
    consent_work *c = ud;
    if (seq % CONSENT_SIZE_EVERY == 0) {
        Cdp__V1__CheckConsentRequest r;
        consent_fill(c, &r, seq);
        consent_size(c, &r.base, resp, seq);
    } else {
        c->sizes->replies++;
    }
    return consent_judge(c, seq, (const Cdp__V1__ConsentDecision *)resp);
}

static int consent_batch_make(void *ud, uint64_t seq, const ProtobufCMessage **req) {
    consent_work *c = ud;
    for (int i = 0; i < c->checks; i++) {
        consent_fill(c, &c->reqs[i], seq * (uint64_t)c->checks + (uint64_t)i);
        c->req_ptrs[i] = &c->reqs[i];
    }
    cdp__v1__check_consent_batch_request__init(&c->batch);
    c->batch.checks = c->req_ptrs;
    c->batch.n_checks = (size_t)c->checks;
    *req = &c->batch.base;
    return c->checks;
}

static int consent_batch_check(void *ud, uint64_t seq, const ProtobufCMessage *resp,
                               uint64_t t_start_ns, uint64_t t_end_ns) {
    (void)t_start_ns;
    (void)t_end_ns;
    consent_work *c = ud;
    const Cdp__V1__CheckConsentBatchResponse *r = (const Cdp__V1__CheckConsentBatchResponse *)resp;
    if (seq % CONSENT_SIZE_EVERY == 0) {
        /* The request is rebuilt after the call started: size its twin. */
        const ProtobufCMessage *req;
        consent_batch_make(c, seq, &req);
        consent_size(c, req, resp, seq);
    } else {
        c->sizes->replies++;
    }
    int ok = 0;
    for (size_t i = 0; i < r->n_decisions && i < (size_t)c->checks; i++)
        ok += consent_judge(c, seq * (uint64_t)c->checks + i, r->decisions[i]);
    if (r->n_decisions != (size_t)c->checks) {
        c->wrong++;
        if (!c->first_wrong[0])
            snprintf(c->first_wrong, sizeof(c->first_wrong), "batch of %d answered %zu; ",
                     c->checks, r->n_decisions);
    }
    return ok;
}

/* ------------------------------------------------------------------ mode */

/* Drives w on ch (closed loop; max_calls 0: for --duration) until done. */
static void consent_drive(uv_loop_t *loop, cdp_rpc_channel *ch, const bench_opts *o,
                          bench_workload *w, uint64_t max_calls, bench_drive_result *r) {
    bench_drive_opts d = {.concurrency = o->concurrency,
                          .duration_ms = max_calls ? o->timeout_s * MS_PER_S
                                                   : o->duration_s * MS_PER_S,
                          .max_calls = max_calls,
                          .deadline_ms = o->deadline_ms};
    if (bench_drive_start(loop, ch, w, &d, r) == 0)
        uv_run(loop, UV_RUN_DEFAULT);
}

static double consent_avg(uint64_t bytes, uint64_t n) { return n ? (double)bytes / (double)n : 0; }

static double consent_rate(const bench_drive_result *r) {
    double s = bench_drive_elapsed_s(r);
    return s > 0 ? (double)r->units_ok / s : 0;
}

static void consent_report(consent_work *c, bench_drive_result *set, bench_drive_result *one,
                           bench_drive_result *many, const consent_sizes *s1,
                           const consent_sizes *sn, const char *why) {
    double rq1 = consent_avg(s1->req_bytes, s1->sized), rp1 = consent_avg(s1->reply_bytes, s1->sized);
    double rqn = consent_avg(sn->req_bytes, sn->sized), rpn = consent_avg(sn->reply_bytes, sn->sized);
    bench_result("consent",
                 "people=%u set_calls=%llu set_failed=%llu calls=%llu failed=%llu "
                 "calls_per_s=%.0f p50_ms=%.3f p99_ms=%.3f req_bytes=%.0f reply_bytes=%.0f "
                 "echo_payload=%.0f checks=%d batch_calls=%llu batch_failed=%llu "
                 "batch_checks_per_s=%.0f batch_p50_ms=%.3f batch_p99_ms=%.3f "
                 "batch_req_bytes=%.0f batch_reply_bytes=%.0f echo_payload_batch=%.0f wrong=%llu "
                 "error=\"%s%s%s%s%s\"",
                 c->n, (unsigned long long)set->units_ok, (unsigned long long)set->failed,
                 (unsigned long long)one->units_ok, (unsigned long long)one->failed,
                 consent_rate(one), bench_lat_quantile_ms(&one->lat, 0.5),
                 bench_lat_quantile_ms(&one->lat, 0.99), rq1, rp1, (rq1 + rp1) / 2, c->checks,
                 (unsigned long long)many->ok, (unsigned long long)many->failed,
                 consent_rate(many), bench_lat_quantile_ms(&many->lat, 0.5),
                 bench_lat_quantile_ms(&many->lat, 0.99), rqn, rpn, (rqn + rpn) / 2,
                 (unsigned long long)c->wrong, why, c->first_wrong, set->first_error,
                 one->first_error, many->first_error);
}

static int consent_alloc(consent_work *c, const bench_opts *o) {
    memset(c, 0, sizeof(*c));
    c->checks = o->checks;
    c->reqs = calloc((size_t)c->checks, sizeof(*c->reqs));
    c->req_ptrs = calloc((size_t)c->checks, sizeof(*c->req_ptrs));
    return c->reqs && c->req_ptrs ? 0 : -1;
}

static void consent_free(consent_work *c) {
    for (uint32_t i = 0; i < c->n; i++)
        free(c->ids[i]);
    free(c->ids);
    free(c->reqs);
    free(c->req_ptrs);
}

int bench_mode_consent(uv_loop_t *loop, const bench_opts *o) {
    cdp_rpc_channel *ing = cdp_rpc_channel_new(loop, o->target, NULL);
    cdp_rpc_channel *prf = cdp_rpc_channel_new(loop, o->profile_target, NULL);
    cdp_rpc_channel *cns = cdp_rpc_channel_new(loop, o->consent_target, NULL);
    consent_work c;
    consent_sizes s1 = {0}, sn = {0};
    bench_drive_result set, one, many;
    memset(&set, 0, sizeof(set));
    memset(&one, 0, sizeof(one));
    memset(&many, 0, sizeof(many));
    bench_seed seed;
    memset(&seed, 0, sizeof(seed));
    int rc = 1;
    if (consent_alloc(&c, o) != 0) {
        consent_report(&c, &set, &one, &many, &s1, &sn, "out of memory; ");
    } else if (bench_seed_run(loop, ing, prf, o, &seed) != 0 || !seed.visible_ok) {
        consent_report(&c, &set, &one, &many, &s1, &sn,
                       "seeding: profiles did not reflect the seed events; ");
    } else if ((c.n = bench_seed_master_ids(&seed, &c.ids)) == 0) {
        consent_report(&c, &set, &one, &many, &s1, &sn, "seeding: no master id seen; ");
    } else {
        bench_workload w = {.svc = &cdp__v1__consent__descriptor, .method = "SetConsent",
                            .make = consent_set_make, .check = consent_set_check, .ud = &c};
        consent_drive(loop, cns, o, &w, c.n, &set);
        if (set.units_ok == c.n) {
            w.method = "CheckConsent";
            w.make = consent_check_make;
            w.check = consent_check_check;
            c.sizes = &s1;
            consent_drive(loop, cns, o, &w, 0, &one);
            w.method = "CheckConsentBatch";
            w.make = consent_batch_make;
            w.check = consent_batch_check;
            c.sizes = &sn;
            consent_drive(loop, cns, o, &w, 0, &many);
        }
        consent_report(&c, &set, &one, &many, &s1, &sn,
                       set.units_ok == c.n ? "" : "SetConsent did not store every person; ");
        rc = set.units_ok != c.n || one.units_ok == 0 || many.units_ok == 0 || one.failed > 0 ||
             many.failed > 0 || c.wrong > 0;
    }
    bench_drive_result_free(&set);
    bench_drive_result_free(&one);
    bench_drive_result_free(&many);
    bench_seed_free(&seed);
    consent_free(&c);
    cdp_rpc_channel_close(ing);
    cdp_rpc_channel_close(prf);
    cdp_rpc_channel_close(cns);
    return rc;
}
