/* seg_eval: the membership path (seg_eval.h). */
#include "seg_eval.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "seg_load.h"

/* ------------------------------------------------------------------ argv */

/* A growable argument vector owning its strings. */
typedef struct {
    char **v;
    size_t *len;
    size_t n, cap;
    int oom;
} seg_argv;

static void seg__argv_add(seg_argv *a, const char *s, size_t len)
{
    if (a->oom)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->v, cap * sizeof(char *));
        if (v)
            a->v = v;
        size_t *l = v ? realloc(a->len, cap * sizeof(size_t)) : NULL;
        if (!l) {
            a->oom = 1;
            return;
        }
        a->len = l;
        a->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) {
        a->oom = 1;
        return;
    }
    memcpy(c, s, len);
    c[len] = '\0';
    a->v[a->n] = c;
    a->len[a->n++] = len;
}

static void seg__argv_str(seg_argv *a, const char *s) { seg__argv_add(a, s, strlen(s)); }

static void seg__argv_i64(seg_argv *a, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    seg__argv_add(a, buf, (size_t)n);
}

static void seg__argv_free(seg_argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    free(a->len);
    memset(a, 0, sizeof(*a));
}

/* ------------------------------------------------------------------ job */

enum { SEG_R_MAIN = 0, SEG_R_DAILY, SEG_R_STATE, SEG_R_VERSION, SEG_R_KNOWN, SEG_R_COUNT };

typedef struct seg_job seg_job;

typedef struct {
    seg_job *j;
    int which;
} seg_slot;

struct seg_job {
    seg_svc *s;
    seg_defs *defs;                 /* the snapshot this evaluation uses */
    seg_sel_mode mode;
    const seg_touch *touch;
    char *master, *only, *ev_json, *mid;
    int register_known, unregister_known, sched_claimed;
    char *pkeys[SEG_PKEY_COUNT];
    seg_eval_cb cb;
    void *ud;
    seg_eval_result res;
    int pending;                    /* replies still to come in this phase */
    seg_slot slots[SEG_R_COUNT];
    /* what the read said */
    seg_profile *prof;
    char *merged_into;
    char **mem_seg;                 /* segments in the mem hash */
    seg_mem_state *mem_st;
    size_t nmem;
    int seen;
    int second_round;        /* the profile read (and registration) was issued */
    size_t npending;
    int64_t store_version;
    /* flush */
    seg_change *changes;
    size_t nchanges;
    int64_t next_due;               /* earliest time-based change, INT64_MAX: none */
};

static void seg__job_free(seg_job *j)
{
    seg_defs_unref(j->defs);
    free(j->master);
    free(j->only);
    free(j->ev_json);
    free(j->mid);
    for (int k = 0; k < SEG_PKEY_COUNT; k++)
        free(j->pkeys[k]);
    if (j->prof)
        seg_profile_free(j->prof);
    free(j->merged_into);
    for (size_t i = 0; i < j->nmem; i++)
        free(j->mem_seg[i]);
    free(j->mem_seg);
    free(j->mem_st);
    for (size_t i = 0; i < j->nchanges; i++)
        seg_change_clear(&j->changes[i]);
    free(j->changes);
    free(j);
}

static void seg__job_done(seg_job *j)
{
    if (j->res.code == GRPC_STATUS_OK) {
        cdp_metrics_inc("cdp_segmentation_evaluations_total", "", j->res.evaluations);
        cdp_metrics_inc("cdp_segmentation_transitions_total", "kind=\"entered\"",
                        j->res.entered);
        cdp_metrics_inc("cdp_segmentation_transitions_total", "kind=\"exited\"",
                        j->res.exited);
    }
    j->cb(&j->res, j->ud);
    seg__job_free(j);
}

/* Records the first failure of the job. */
static void seg__job_fail(seg_job *j, grpc_status_code code, const char *msg)
{
    if (j->res.code == GRPC_STATUS_OK) {
        j->res.code = code;
        snprintf(j->res.msg, sizeof(j->res.msg), "%s", msg);
    }
}

/* Checks a reply; records a failure. Returns 1 when the reply is usable. */
static int seg__job_ok(seg_job *j, redisReply *reply, const char *err)
{
    char msg[SEG_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code != GRPC_STATUS_OK)
        seg__job_fail(j, code, msg);
    return code == GRPC_STATUS_OK;
}

/* ------------------------------------------------------------------ phase 3: flush */

static void seg__cleared(redisReply *reply, const char *err, void *ud)
{
    seg_job *j = ud;
    seg__job_ok(j, reply, err);
    seg__job_done(j);
}

/* Every index write, XADD and schedule update answered: delete the pending
 * entries that were flushed. */
static void seg__flush_release(seg_job *j);

static void seg__flushed_one(redisReply *reply, const char *err, void *ud)
{
    seg_job *j = ud;
    seg__job_ok(j, reply, err);
    seg__flush_release(j);
}

/* Counts one flush command done; after the last, clears pending. */
static void seg__flush_release(seg_job *j)
{
    if (--j->pending > 0)
        return;
    if (j->res.code != GRPC_STATUS_OK || j->nchanges == 0) {
        seg__job_done(j);
        return;
    }
    seg_argv a = { 0 };
    seg__argv_str(&a, "HDEL");
    seg__argv_str(&a, j->pkeys[SEG_PKEY_PENDING]);
    for (size_t i = 0; i < j->nchanges; i++)
        seg__argv_str(&a, j->changes[i].cid);
    if (a.oom) {
        seg__argv_free(&a);
        seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__job_done(j);
        return;
    }
    cdp_redis_command(j->s->redis, a.v[1], a.len[1], seg__cleared, j, (int)a.n,
                      (const char **)a.v, a.len);
    seg__argv_free(&a);
}

static int seg__change_cmp(const void *a, const void *b)
{
    const seg_change *x = a, *y = b;
    int c = strcmp(x->seg, y->seg);
    if (c)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* Issues one command of the flush (counted in j->pending). */
static void seg__flush_cmd(seg_job *j, seg_argv *a, const char *key)
{
    if (a->oom) {
        seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->pending++;
    cdp_redis_command(j->s->redis, key, strlen(key), seg__flushed_one, j, (int)a->n,
                      (const char **)a->v, a->len);
}

/* Runs one two-key script of the flush (counted in j->pending); a NULL key
 * is a failed allocation. */
static void seg__flush_eval(seg_job *j, cdp_redis_script *script, const char *k0,
                            const char *k1, seg_argv *a)
{
    if (!k0 || !k1 || a->oom) {
        seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    const char *keys[2] = { k0, k1 };
    size_t klen[2] = { strlen(k0), strlen(k1) };
    j->pending++;
    cdp_redis_eval(j->s->redis, script, seg__flushed_one, j, 2, keys, klen, (int)a->n,
                   (const char **)a->v, a->len);
}

static void seg__flush_index(seg_job *j, const seg_change *c)
{
    char *members = seg_skey(c->seg, SEG_SKEY_MEMBERS), *idx = seg_skey(c->seg, SEG_SKEY_IDX);
    seg_argv a = { 0 };
    seg__argv_str(&a, c->m);
    seg__argv_i64(&a, c->n);
    seg__argv_str(&a, c->kind);
    seg__argv_i64(&a, c->at_ms);
    seg__argv_i64(&a, c->created_ms);
    seg__flush_eval(j, j->s->scripts.index, members, idx, &a);
    seg__argv_free(&a);
    free(members);
    free(idx);
}

/* The change onto the stream, once per change id (seg_lua change). */
static void seg__flush_xadd(seg_job *j, const seg_change *c)
{
    seg_argv a = { 0 };
    seg__argv_str(&a, c->cid);
    seg__argv_i64(&a, j->s->cfg.changes_maxlen);
    const char *kv[][2] = { { "cid", c->cid }, { "seg", c->seg }, { "m", c->m },
                            { "kind", c->kind } };
    for (size_t i = 0; i < 4; i++) {
        seg__argv_str(&a, kv[i][0]);
        seg__argv_str(&a, kv[i][1]);
    }
    seg__argv_str(&a, "at");
    seg__argv_i64(&a, c->at_ms);
    seg__argv_str(&a, "ev");
    seg__argv_str(&a, c->ev);
    seg__argv_str(&a, "mid");
    seg__argv_str(&a, c->mid);
    seg__flush_eval(j, j->s->scripts.change, SEG_KEY_CHANGES, SEG_KEY_CHANGE_IDS, &a);
    seg__argv_free(&a);
}

/* The apply script answered {entered, exited, cid, json, ...}. */
static void seg__applied(redisReply *reply, const char *err, void *ud)
{
    seg_job *j = ud;
    if (!seg__job_ok(j, reply, err)) {
        seg__job_done(j);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 || reply->elements % 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        seg__job_fail(j, GRPC_STATUS_INTERNAL, "malformed reply of the membership script");
        seg__job_done(j);
        return;
    }
    j->res.entered = (int)reply->element[0]->integer;
    j->res.exited = (int)reply->element[1]->integer;
    size_t n = (reply->elements - 2) / 2;
    j->changes = calloc(n ? n : 1, sizeof(seg_change));
    if (!j->changes) {
        seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__job_done(j);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = reply->element[2 + 2 * i], *v = reply->element[3 + 2 * i];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            seg_change_parse(f->str, f->len, v->str, v->len, &j->changes[j->nchanges]) != 0) {
            cdp_log(CDP_LOG_WARN, "skipping a malformed pending transition", "{s:s}",
                    "master", j->master);
            continue;
        }
        j->nchanges++;
    }
    qsort(j->changes, j->nchanges, sizeof(seg_change), seg__change_cmp);
    j->pending = 1; /* held while issuing */
    for (size_t i = 0; i < j->nchanges; i++) {
        const seg_change *c = &j->changes[i];
        /* a deleted segment keeps its history but gets no index back; a
         * segment this replica does not know yet (its snapshot is older
         * than the stored definitions) is indexed all the same */
        if (seg_defs_find(j->defs, c->seg) >= 0 ||
            j->store_version != seg_defs_version(j->defs))
            seg__flush_index(j, c);
        seg__flush_xadd(j, c);
    }
    if (j->next_due != INT64_MAX) {
        seg_argv a = { 0 };
        seg__argv_str(&a, "ZADD");
        seg__argv_str(&a, SEG_KEY_SCHED_DUE);
        seg__argv_str(&a, "LT");
        seg__argv_i64(&a, j->next_due);
        seg__argv_str(&a, j->master);
        seg__flush_cmd(j, &a, SEG_KEY_SCHED_DUE);
        seg__argv_free(&a);
    }
    if (j->sched_claimed) {
        seg_argv a = { 0 };
        seg__argv_str(&a, "ZREM");
        seg__argv_str(&a, SEG_KEY_SCHED_LEASE);
        seg__argv_str(&a, j->master);
        seg__flush_cmd(j, &a, SEG_KEY_SCHED_LEASE);
        seg__argv_free(&a);
    }
    seg__flush_release(j);
}

/* ------------------------------------------------------------------ phase 2: evaluate */

/* The stored membership of segment id (NULL if none). */
static const seg_mem_state *seg__mem_find(const seg_job *j, const char *id)
{
    for (size_t i = 0; i < j->nmem; i++)
        if (strcmp(j->mem_seg[i], id) == 0)
            return &j->mem_st[i];
    return NULL;
}

/* Adds the quadruple (segment, want, created, ev) for the apply script;
 * ev NULL: the touch's events. */
static void seg__want(seg_argv *a, const char *id, const char *want, int64_t created,
                      const char *ev)
{
    seg__argv_str(a, id);
    seg__argv_str(a, want);
    seg__argv_i64(a, created);
    seg__argv_str(a, ev ? ev : "");
}

/* The events a rule reads, as a JSON array (malloc'd; NULL when it reads
 * none or memory runs out). The cause of a change found while evaluating a
 * profile against a segment its batch did not touch: the data came from
 * events a concurrent batch applied, and that batch's own evaluation will
 * find nothing left to change. */
static char *seg__rule_events_json(const seg_def *d)
{
    const seg_dep *deps;
    size_t n = seg_rule_deps(d->r, &deps);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (deps[i].kind == SEG_DEP_EVENT)
            json_array_append_new(arr, json_string(deps[i].name));
    char *out = arr && json_array_size(arr) ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return out;
}

/* Fills sel for the job's mode. Returns 0, or -1 when the mode names a
 * segment this replica does not know. */
static int seg__select(seg_job *j, unsigned char *sel)
{
    size_t n = seg_defs_count(j->defs);
    switch (j->mode) {
    case SEG_SEL_TOUCH:
        if (j->seen) {
            seg_defs_select(j->defs, j->touch, sel);
            break;
        }
        /* a profile segmentation has never seen: every segment */
        memset(sel, 1, n);
        break;
    case SEG_SEL_ALL:
        memset(sel, 1, n);
        break;
    case SEG_SEL_TIME:
        seg_defs_select_time_based(j->defs, sel);
        break;
    case SEG_SEL_ONE: {
        long i = seg_defs_find(j->defs, j->only);
        if (i < 0)
            return -1;
        sel[i] = 1;
        break;
    }
    case SEG_SEL_EXIT_ALL:
        break;
    }
    return 0;
}

/* Every read answered: evaluate, then run the apply script. */
static void seg__evaluate(seg_job *j)
{
    if (j->res.code != GRPC_STATUS_OK) {
        seg__job_done(j);
        return;
    }
    size_t n = seg_defs_count(j->defs);
    unsigned char *sel = calloc(n ? n : 1, 1);
    seg_argv a = { 0 };
    int64_t now = seg_now(j->s);
    seg__argv_i64(&a, now);
    seg__argv_str(&a, j->master);
    seg__argv_str(&a, j->ev_json ? j->ev_json : "[]");
    seg__argv_str(&a, j->mid ? j->mid : "");
    seg__argv_str(&a, "0"); /* the count, set below */
    if (!sel) {
        seg__argv_free(&a);
        seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__job_done(j);
        return;
    }
    int exit_all = j->mode == SEG_SEL_EXIT_ALL || j->merged_into;
    if (!exit_all && seg__select(j, sel) != 0) {
        free(sel);
        seg__argv_free(&a);
        seg__job_fail(j, GRPC_STATUS_NOT_FOUND, "segment not found");
        seg__job_done(j);
        return;
    }
    /* A profile seen for the first time is evaluated against every
     * segment; those its batch did not touch get their own cause. */
    unsigned char *tsel = NULL;
    if (!exit_all && j->mode == SEG_SEL_TOUCH && !j->seen && (tsel = calloc(n ? n : 1, 1)))
        seg_defs_select(j->defs, j->touch, tsel);
    size_t triples = 0;
    j->next_due = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const seg_def *d = seg_defs_at(j->defs, i);
        if (exit_all) {
            const seg_mem_state *st = seg__mem_find(j, d->id);
            if (st && st->in) {
                seg__want(&a, d->id, "0", st->created_ms, NULL);
                triples++;
            }
            continue;
        }
        if (!sel[i])
            continue;
        int64_t next = INT64_MAX;
        int in = seg_rule_eval(d->r, j->prof, now, d->time_based ? &next : NULL);
        j->res.evaluations++;
        if (d->time_based && next < j->next_due)
            j->next_due = next;
        if (j->mode == SEG_SEL_ONE)
            j->res.matched = in;
        char *own_ev = tsel && !tsel[i] ? seg__rule_events_json(d) : NULL;
        seg__want(&a, d->id, in ? "1" : "0", d->created_ms, own_ev);
        free(own_ev);
        triples++;
    }
    /* lazily forget memberships of deleted segments, but only when this
     * replica's snapshot is as new as the stored definitions */
    if (j->store_version == seg_defs_version(j->defs)) {
        for (size_t i = 0; i < j->nmem; i++)
            if (seg_defs_find(j->defs, j->mem_seg[i]) < 0 &&
                (j->mem_st[i].in || j->mem_st[i].created_ms != 0)) { /* not yet dropped */
                seg__want(&a, j->mem_seg[i], "D", 0, NULL);
                triples++;
            }
    }
    free(sel);
    free(tsel);
    if (triples == 0 && j->npending == 0 && j->seen && j->next_due == INT64_MAX &&
        !j->sched_claimed) {
        seg__argv_free(&a);
        seg__job_done(j);
        return;
    }
    if (!a.oom) {
        char cnt[32];
        int len = snprintf(cnt, sizeof(cnt), "%zu", triples);
        free(a.v[4]);
        a.v[4] = strdup(cnt);
        a.len[4] = (size_t)len;
        if (!a.v[4])
            a.oom = 1;
    }
    if (a.oom) {
        seg__argv_free(&a);
        seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__job_done(j);
        return;
    }
    const char *keys[2] = { j->pkeys[SEG_PKEY_MEM], j->pkeys[SEG_PKEY_PENDING] };
    size_t klen[2] = { strlen(keys[0]), strlen(keys[1]) };
    cdp_redis_eval(j->s->redis, j->s->scripts.apply, seg__applied, j, 2, keys, klen, (int)a.n,
                   (const char **)a.v, a.len);
    seg__argv_free(&a);
}

/* ------------------------------------------------------------------ phase 1: read */

static int seg__load_mem(seg_job *j, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return -1;
    size_t n = r->elements / 2;
    j->mem_seg = calloc(n ? n : 1, sizeof(char *));
    j->mem_st = calloc(n ? n : 1, sizeof(seg_mem_state));
    if (!j->mem_seg || !j->mem_st)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = r->element[2 * i], *v = r->element[2 * i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        if (f->len == strlen(SEG_MEM_SEEN_FIELD) && memcmp(f->str, SEG_MEM_SEEN_FIELD, f->len) == 0) {
            j->seen = 1;
            continue;
        }
        seg_mem_state st;
        if (seg_mem_parse(v->str, v->len, &st) != 0)
            continue;
        if (!(j->mem_seg[j->nmem] = strndup(f->str, f->len)))
            return -1;
        j->mem_st[j->nmem++] = st;
    }
    return 0;
}

/* The state script's reply {merged_into, pending count, mem fields...}. */
static int seg__load_state(seg_job *j, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    if (r->element[0]->len &&
        !(j->merged_into = strndup(r->element[0]->str, r->element[0]->len)))
        return -1;
    j->npending = r->element[1]->integer > 0 ? (size_t)r->element[1]->integer : 0;
    redisReply mem = *r;
    mem.elements = r->elements - 2;
    mem.element = r->element + 2;
    return seg__load_mem(j, &mem);
}

static void seg__read_done(seg_job *j);

static void seg__read_reply(redisReply *reply, const char *err, void *ud)
{
    seg_slot *slot = ud;
    seg_job *j = slot->j;
    if (seg__job_ok(j, reply, err)) {
        int bad = 0, exists;
        switch (slot->which) {
        case SEG_R_MAIN:
            bad = seg_profile_load_main(j->prof, reply, &j->merged_into, &exists);
            break;
        case SEG_R_DAILY:
            bad = seg_profile_load_daily(j->prof, reply);
            break;
        case SEG_R_STATE:
            bad = seg__load_state(j, reply);
            break;
        case SEG_R_VERSION:
            if (reply->type == REDIS_REPLY_STRING)
                bad = cdp_parse_i64(reply->str, reply->len, &j->store_version);
            break;
        default:
            break;
        }
        if (bad)
            seg__job_fail(j, GRPC_STATUS_INTERNAL, "malformed reply while reading a profile");
    }
    if (--j->pending == 0)
        seg__read_done(j);
}

static void seg__read_cmd(seg_job *j, int which, const char *key, int argc, const char **argv)
{
    size_t len[4];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    j->slots[which] = (seg_slot){ j, which };
    j->pending++;
    cdp_redis_command(j->s->redis, key, strlen(key), seg__read_reply, &j->slots[which], argc,
                      argv, len);
}

/* 1 when the job's evaluation reads the profile: some segment is to be
 * evaluated. A seen profile whose batch touched nothing any segment reads
 * (most batches: page views against purchase segments) costs four small
 * reads and no profile read. */
static int seg__needs_profile(seg_job *j)
{
    size_t n = seg_defs_count(j->defs);
    if (j->res.code != GRPC_STATUS_OK || n == 0 || j->merged_into ||
        j->mode == SEG_SEL_EXIT_ALL)
        return 0;
    if (j->mode != SEG_SEL_TOUCH || !j->seen)
        return 1;
    unsigned char *sel = calloc(n, 1);
    if (!sel)
        return 1;
    size_t k = seg_defs_select(j->defs, j->touch, sel);
    free(sel);
    return k > 0;
}

/* First round answered (state script, version): read the profile when
 * something is to be evaluated, register a profile seen for the first
 * time (a seen one was registered by its first evaluation), then
 * evaluate. */
static void seg__read_done(seg_job *j)
{
    if (j->second_round) {
        seg__evaluate(j);
        return;
    }
    j->second_round = 1;
    int need = seg__needs_profile(j);
    int reg = j->register_known && !j->seen && j->res.code == GRPC_STATUS_OK;
    if (!need && !reg) {
        seg__evaluate(j);
        return;
    }
    j->pending = 1; /* held while issuing */
    if (need) {
        const char *main_argv[] = { "HGETALL", j->pkeys[SEG_PKEY_MAIN] };
        const char *daily_argv[] = { "HGETALL", j->pkeys[SEG_PKEY_DAILY] };
        seg__read_cmd(j, SEG_R_MAIN, j->pkeys[SEG_PKEY_MAIN], 2, main_argv);
        seg__read_cmd(j, SEG_R_DAILY, j->pkeys[SEG_PKEY_DAILY], 2, daily_argv);
    }
    if (reg) {
        char *known = seg_known_key(seg_known_shard(j->master));
        if (!known) {
            seg__job_fail(j, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            const char *k_argv[] = { "SADD", known, j->master };
            seg__read_cmd(j, SEG_R_KNOWN, known, 3, k_argv);
            free(known);
        }
    }
    if (--j->pending == 0)
        seg__evaluate(j);
}

void seg_eval_profile(seg_svc *s, const seg_eval_target *t, seg_eval_cb cb, void *ud)
{
    seg_job *j = calloc(1, sizeof(*j));
    seg_eval_result oom = { .code = GRPC_STATUS_RESOURCE_EXHAUSTED, .msg = "out of memory" };
    if (!j) {
        cb(&oom, ud);
        return;
    }
    j->s = s;
    j->defs = seg_defs_ref(s->defs);
    j->mode = t->mode;
    j->touch = t->touch;
    j->cb = cb;
    j->ud = ud;
    j->register_known = t->register_known;
    j->unregister_known = t->unregister_known;
    j->sched_claimed = t->sched_claimed;
    j->master = strdup(t->master);
    j->only = t->only ? strdup(t->only) : NULL;
    j->ev_json = t->ev_json ? strdup(t->ev_json) : NULL;
    j->mid = t->mid ? strdup(t->mid) : NULL;
    j->prof = seg_profile_new();
    int bad = !j->master || (t->only && !j->only) || (t->ev_json && !j->ev_json) ||
              (t->mid && !j->mid) || !j->prof;
    for (int k = 0; !bad && k < SEG_PKEY_COUNT; k++)
        bad = !(j->pkeys[k] = seg_pkey(t->master, k));
    char *known = bad ? NULL : seg_known_key(seg_known_shard(t->master));
    if (bad || !known) {
        seg__job_free(j);
        cb(&oom, ud);
        return;
    }
    /* held at 1 while issuing, so replies failing at once cannot finish it */
    j->pending = 1;
    const char *ver_argv[] = { "GET", SEG_KEY_DEFS_VERSION };
    const char *skeys[3] = { j->pkeys[SEG_PKEY_MAIN], j->pkeys[SEG_PKEY_MEM],
                             j->pkeys[SEG_PKEY_PENDING] };
    size_t sklen[3] = { strlen(skeys[0]), strlen(skeys[1]), strlen(skeys[2]) };
    j->slots[SEG_R_STATE] = (seg_slot){ j, SEG_R_STATE };
    j->pending++;
    cdp_redis_eval(s->redis, s->scripts.state, seg__read_reply, &j->slots[SEG_R_STATE], 3, skeys,
                   sklen, 0, NULL, NULL);
    seg__read_cmd(j, SEG_R_VERSION, SEG_KEY_DEFS_VERSION, 2, ver_argv);
    if (j->unregister_known) {
        const char *k_argv[] = { "SREM", known, j->master };
        seg__read_cmd(j, SEG_R_KNOWN, known, 3, k_argv);
    }
    free(known);
    if (--j->pending == 0)
        seg__read_done(j);
}
