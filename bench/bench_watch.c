/* bench_watch: see bench_watch.h. A round walks the persons it reads
 * (the gate, or everyone incomplete), at most `concurrency` calls in
 * flight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_watch.h"
#include "cdp/v1/profile.pb-c.h"

enum { WATCH_MASTER_ID_MAX = 80, NS_PER_MS = 1000 * 1000 };

typedef struct {
    int64_t expected, seen;
    char master_id[WATCH_MASTER_ID_MAX];
} watch_person;

struct bench_watch {
    uv_loop_t *loop;
    cdp_rpc_channel *ch;
    const bench_gen *gen;
    bench_watch_opts o;
    watch_person *persons;
    uint32_t people, remaining, next, gate_step;
    int inflight, running, gated;
    uint64_t rounds, calls, give_up_ns;
    uv_timer_t timer;
    void (*done)(void *ud, int ok);
    void *ud;
};

typedef struct {
    bench_watch *w;
    uint32_t p;
} watch_call;

bench_watch *bench_watch_new(uv_loop_t *loop, cdp_rpc_channel *profile, const bench_gen *gen,
                             const bench_watch_opts *o) {
    bench_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->persons = calloc(gen->people, sizeof(*w->persons));
    if (!w->persons) {
        free(w);
        return NULL;
    }
    w->loop = loop;
    w->ch = profile;
    w->gen = gen;
    w->o = *o;
    w->people = gen->people;
    w->gated = o->gate > 0 && o->gate < gen->people;
    w->gate_step = w->gated ? gen->people / o->gate : 1;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    return w;
}

static void watch_closed(uv_handle_t *h) {
    bench_watch *w = h->data;
    free(w->persons);
    free(w);
}

void bench_watch_free(bench_watch *w) {
    if (w)
        uv_close((uv_handle_t *)&w->timer, watch_closed);
}

void bench_watch_expect(bench_watch *w, uint32_t p, int64_t n) {
    if (p < w->people)
        w->persons[p].expected += n;
}

uint32_t bench_watch_remaining(const bench_watch *w) { return w->remaining; }
uint64_t bench_watch_rounds(const bench_watch *w) { return w->rounds; }
uint64_t bench_watch_calls(const bench_watch *w) { return w->calls; }

const char *bench_watch_master_id(const bench_watch *w, uint32_t p) {
    return p < w->people ? w->persons[p].master_id : "";
}

static int watch_complete(const watch_person *wp) { return wp->seen >= wp->expected; }

/* 1 if this round reads person p. */
static int watch_reads(const bench_watch *w, uint32_t p) {
    if (watch_complete(&w->persons[p]))
        return 0;
    return !w->gated || p % w->gate_step == 0;
}

/* Persons short of their count: everyone, or only the gate's while gated. */
static uint32_t watch_count_short(const bench_watch *w, int gate_only) {
    uint32_t n = 0;
    for (uint32_t p = 0; p < w->people; p++)
        n += !watch_complete(&w->persons[p]) && (!gate_only || p % w->gate_step == 0);
    return n;
}

/* ------------------------------------------------------------------ rounds */

static void watch_pump(bench_watch *w);

static void watch_round_start(uv_timer_t *t) {
    bench_watch *w = t->data;
    w->rounds++;
    w->next = 0;
    watch_pump(w);
}

static void watch_finish(bench_watch *w, int ok) {
    w->running = 0;
    w->done(w->ud, ok);
}

/* A round ended: done, the gate opened (a full round at once), out of
 * time, or another round after the pause. */
static void watch_round_end(bench_watch *w) {
    w->remaining = watch_count_short(w, 0);
    if (w->remaining == 0) {
        watch_finish(w, 1);
    } else if (w->gated && watch_count_short(w, 1) == 0) {
        w->gated = 0;
        uv_timer_start(&w->timer, watch_round_start, 0, 0);
    } else if (uv_hrtime() >= w->give_up_ns) {
        watch_finish(w, 0);
    } else {
        uv_timer_start(&w->timer, watch_round_start, (uint64_t)w->o.interval_ms, 0);
    }
}

static void watch_on_reply(grpc_status_code code, const char *details,
                           const ProtobufCMessage *resp, void *ud) {
    (void)details;
    watch_call *c = ud;
    bench_watch *w = c->w;
    watch_person *wp = &w->persons[c->p];
    if (code == GRPC_STATUS_OK && resp) {
        const Cdp__V1__ProfileView *v = (const Cdp__V1__ProfileView *)resp;
        wp->seen = v->total_events;
        snprintf(wp->master_id, sizeof(wp->master_id), "%s", v->master_id);
    }
    free(c);
    w->inflight--;
    watch_pump(w);
}

/* Issues GetProfile for the next incomplete persons of this round. */
static void watch_pump(bench_watch *w) {
    char uid[BENCH_ID_MAX];
    while (w->inflight < w->o.concurrency && w->next < w->people) {
        uint32_t p = w->next++;
        if (!watch_reads(w, p))
            continue;
        watch_call *c = malloc(sizeof(*c));
        if (!c)
            break;
        c->w = w;
        c->p = p;
        bench_gen_person_user_id(w->gen, p, uid, sizeof(uid));
        Cdp__V1__Identifier id = CDP__V1__IDENTIFIER__INIT;
        id.type = "user_id";
        id.value = uid;
        Cdp__V1__GetProfileRequest req = CDP__V1__GET_PROFILE_REQUEST__INIT;
        req.identifier = &id;
        req.timeline_limit = 1;
        w->inflight++;
        w->calls++;
        cdp_rpc_unary(w->ch, &cdp__v1__profile__descriptor, "GetProfile", &req.base,
                      w->o.deadline_ms, watch_on_reply, c);
    }
    if (w->inflight == 0 && w->next >= w->people && w->running)
        watch_round_end(w);
}

void bench_watch_start(bench_watch *w, void (*done)(void *ud, int ok), void *ud) {
    w->done = done;
    w->ud = ud;
    w->running = 1;
    w->give_up_ns = uv_hrtime() + (uint64_t)w->o.timeout_ms * NS_PER_MS;
    uv_timer_start(&w->timer, watch_round_start, 0, 0);
}
