/* seg_crud: the definition handlers - CreateSegment, UpdateSegment,
 * GetSegment, ListSegments, DeleteSegment, ValidateRule, GetBackfill.
 *
 * A definition is written by one script on the {defs} slot (seg_lua
 * def_put / def_del) that also bumps the definitions version; an update is
 * a compare-and-set against the JSON it read, retried on a concurrent
 * change. A new or changed rule then starts a backfill (bf_reset on the
 * segment's slot) and this replica reloads its snapshot at once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp/v1/segmentation.pb-c.h"
#include "cdp_log.h"
#include "seg_load.h"
#include "seg_service.h"

enum { SEG_CAS_ATTEMPTS = 5, SEG_GEN_ID_BYTES = 8 };

/* ------------------------------------------------------------------ messages */

static Cdp__V1__BackfillState seg__bf_state(const char *s)
{
    if (!strcmp(s, "PENDING"))
        return CDP__V1__BACKFILL_STATE__BACKFILL_STATE_PENDING;
    if (!strcmp(s, "RUNNING"))
        return CDP__V1__BACKFILL_STATE__BACKFILL_STATE_RUNNING;
    if (!strcmp(s, "DONE"))
        return CDP__V1__BACKFILL_STATE__BACKFILL_STATE_DONE;
    if (!strcmp(s, "FAILED"))
        return CDP__V1__BACKFILL_STATE__BACKFILL_STATE_FAILED;
    return CDP__V1__BACKFILL_STATE__BACKFILL_STATE_UNSPECIFIED;
}

/* A BackfillStatus and its timestamps; strings borrow from the inputs. */
typedef struct {
    Cdp__V1__BackfillStatus m;
    Google__Protobuf__Timestamp started, finished;
} seg_bf_msg;

static void seg__bf_msg(seg_bf_msg *out, const char *id, seg_bf_status *b)
{
    cdp__v1__backfill_status__init(&out->m);
    out->m.segment_id = (char *)id;
    out->m.version = b->version;
    out->m.state = seg__bf_state(b->state);
    out->m.scanned = b->scanned;
    out->m.total = b->total;
    out->m.matched = b->matched;
    out->m.error = b->error;
    if (b->started_ms) {
        seg_ts_from_ms(&out->started, b->started_ms);
        out->m.started_at = &out->started;
    }
    if (b->finished_ms) {
        seg_ts_from_ms(&out->finished, b->finished_ms);
        out->m.finished_at = &out->finished;
    }
}

/* A Segment message over a definition (borrowed). */
typedef struct {
    Cdp__V1__Segment m;
    Google__Protobuf__Timestamp created, updated;
    seg_bf_msg bf;
} seg_seg_msg;

static void seg__seg_msg(seg_seg_msg *out, const seg_def *d, seg_bf_status *bf, int64_t members)
{
    cdp__v1__segment__init(&out->m);
    out->m.id = d->id;
    out->m.name = d->name;
    out->m.description = d->description;
    out->m.rule = d->rule;
    out->m.canonical_rule = d->canonical;
    out->m.n_reads = d->nreads;
    out->m.reads = d->reads;
    out->m.time_based = d->time_based;
    out->m.version = d->version;
    seg_ts_from_ms(&out->created, d->created_ms);
    seg_ts_from_ms(&out->updated, d->updated_ms);
    out->m.created_at = &out->created;
    out->m.updated_at = &out->updated;
    if (bf && bf->present) {
        seg__bf_msg(&out->bf, d->id, bf);
        out->m.backfill = &out->bf.m;
    }
    out->m.member_count = members;
}

/* Answers INVALID_ARGUMENT with a rule's parse error, on `field`. */
static void seg__rule_error(cdp_rpc_call *call, const char *field, const seg_rule_error *e)
{
    if (e->line > 0)
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: line %d, column %d: %s", field,
                     e->line, e->column, e->message);
    else
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", field, e->message);
}

/* Checks the length of rule text given as `field`. Answers and returns -1
 * when it is too long. */
static int seg__check_rule_len(cdp_rpc_call *call, const char *field, const char *rule)
{
    if (strlen(rule) > SEG_RULE_MAX_TEXT) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: at most %d bytes", field,
                     SEG_RULE_MAX_TEXT);
        return -1;
    }
    return 0;
}

/* Checks rule text limits and parses it into d. Answers and returns -1 on
 * a bad rule. */
static int seg__set_rule(cdp_rpc_call *call, seg_def *d, const char *rule)
{
    if (seg__check_rule_len(call, "segment.rule", rule) != 0)
        return -1;
    seg_rule_error e;
    memset(&e, 0, sizeof(e));
    if (seg_def_set_rule(d, rule, &e) != 0) {
        seg__rule_error(call, "segment.rule", &e);
        return -1;
    }
    return 0;
}

static int seg__check_text(cdp_rpc_call *call, const char *name, const char *desc,
                           int name_required)
{
    if (name_required && !name[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment.name: required");
        return -1;
    }
    if (strlen(name) > SEG_NAME_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment.name: at most %d bytes",
                     SEG_NAME_MAX);
        return -1;
    }
    if (strlen(desc) > SEG_DESCRIPTION_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment.description: at most %d bytes",
                     SEG_DESCRIPTION_MAX);
        return -1;
    }
    return 0;
}

static int seg__check_id(cdp_rpc_call *call, const char *field, const char *id)
{
    if (!id[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: required", field);
        return -1;
    }
    if (!seg_id_valid(id)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "%s: must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'", field);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ read path */

/* Segments being answered: their member counts and backfills are read in
 * one pipelined burst. */
typedef struct {
    seg_svc *s;
    cdp_rpc_call *call;
    seg_def *defs;
    size_t n;
    int64_t *members;
    seg_bf_status *bf;
    int list;
    char *next_token;
    int pending;
    grpc_status_code code;
    char msg[SEG_ERR_MAX];
} seg_answer;

typedef struct {
    seg_answer *a;
    size_t i;
    int bf;
} seg_answer_slot;

static void seg__answer_free(seg_answer *a)
{
    for (size_t i = 0; i < a->n; i++)
        seg_def_clear(&a->defs[i]);
    free(a->defs);
    free(a->members);
    free(a->bf);
    free(a->next_token);
    free(a);
}

static void seg__answer_send(seg_answer *a)
{
    if (a->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(a->call, a->code, "%s", a->msg);
        seg__answer_free(a);
        return;
    }
    seg_seg_msg *m = calloc(a->n ? a->n : 1, sizeof(*m));
    Cdp__V1__Segment **ptrs = calloc(a->n ? a->n : 1, sizeof(*ptrs));
    if (!m || !ptrs) {
        cdp_rpc_fail(a->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < a->n; i++) {
            seg__seg_msg(&m[i], &a->defs[i], &a->bf[i], a->members[i]);
            ptrs[i] = &m[i].m;
        }
        if (a->list) {
            Cdp__V1__ListSegmentsResponse r = CDP__V1__LIST_SEGMENTS_RESPONSE__INIT;
            r.n_segments = a->n;
            r.segments = ptrs;
            r.next_page_token = a->next_token ? a->next_token : "";
            cdp_rpc_reply(a->call, &r.base);
        } else {
            cdp_rpc_reply(a->call, &m[0].m.base);
        }
    }
    free(m);
    free(ptrs);
    seg__answer_free(a);
}

static void seg__answer_reply(redisReply *reply, const char *err, void *ud)
{
    seg_answer_slot *slot = ud;
    seg_answer *a = slot->a;
    char msg[SEG_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code == GRPC_STATUS_OK) {
        if (slot->bf)
            seg_bf_status_load(&a->bf[slot->i], reply);
        else if (reply->type == REDIS_REPLY_INTEGER)
            a->members[slot->i] = reply->integer;
    } else if (a->code == GRPC_STATUS_OK) {
        a->code = code;
        snprintf(a->msg, sizeof(a->msg), "%s", msg);
    }
    free(slot);
    if (--a->pending == 0)
        seg__answer_send(a);
}

/* Answers with n definitions (takes ownership of the array): one Segment,
 * or a ListSegmentsResponse when list is set (next_token copied). */
static void seg__answer_defs(seg_svc *s, cdp_rpc_call *call, seg_def *defs, size_t n, int list,
                             const char *next_token)
{
    seg_answer *a = calloc(1, sizeof(*a));
    if (a) {
        a->members = calloc(n ? n : 1, sizeof(int64_t));
        a->bf = calloc(n ? n : 1, sizeof(seg_bf_status));
        a->next_token = next_token ? strdup(next_token) : NULL;
    }
    if (!a || !a->members || !a->bf || (next_token && !a->next_token)) {
        for (size_t i = 0; i < n; i++)
            seg_def_clear(&defs[i]);
        free(defs);
        if (a) {
            a->n = 0;
            seg__answer_free(a);
        }
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    a->s = s;
    a->call = call;
    a->defs = defs;
    a->n = n;
    a->list = list;
    a->pending = 1;
    for (size_t i = 0; i < n; i++) {
        for (int bf = 0; bf < 2; bf++) {
            char *key = seg_skey(defs[i].id, bf ? SEG_SKEY_BF : SEG_SKEY_MEMBERS);
            seg_answer_slot *slot = malloc(sizeof(*slot));
            if (!key || !slot) {
                free(key);
                free(slot);
                a->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
                snprintf(a->msg, sizeof(a->msg), "out of memory");
                continue;
            }
            *slot = (seg_answer_slot){ a, i, bf };
            a->pending++;
            cdp_redis_commandf(s->redis, key, seg__answer_reply, slot,
                               bf ? "HGETALL %s" : "ZCARD %s", key);
            free(key);
        }
    }
    if (--a->pending == 0)
        seg__answer_send(a);
}

/* ------------------------------------------------------------------ write path */

/* A create or update in flight. */
typedef struct {
    seg_svc *s;
    cdp_rpc_call *call;
    seg_def def;
    char *expected;          /* update: the stored JSON the change is based on */
    char *json;              /* what is written */
    int rule_changed;
    int attempts;
    const Cdp__V1__UpdateSegmentRequest *upd;
    seg_bf_status bf;
} seg_write;

static void seg__write_free(seg_write *w)
{
    seg_def_clear(&w->def);
    free(w->expected);
    free(w->json);
    free(w);
}

/* Answers RESOURCE_EXHAUSTED and frees w. */
static void seg__write_oom(seg_write *w)
{
    cdp_rpc_fail(w->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    seg__write_free(w);
}

/* When the Redis outcome is a failure, answers it, frees w and returns 1. */
static int seg__write_failed(seg_write *w, const redisReply *reply, const char *err)
{
    if (!cdp_rpc_fail_redis(w->call, reply, err))
        return 0;
    seg__write_free(w);
    return 1;
}

/* Answers with the written definition, its member count and backfill. */
static void seg__write_answer(seg_write *w)
{
    seg_def *d = malloc(sizeof(*d));
    if (!d) {
        cdp_rpc_fail(w->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        *d = w->def;
        memset(&w->def, 0, sizeof(w->def));
        seg__answer_defs(w->s, w->call, d, 1, 0, NULL);
    }
    seg__write_free(w);
}

static void seg__bf_reset_done(redisReply *reply, const char *err, void *ud)
{
    seg_write *w = ud;
    if (!seg__write_failed(w, reply, err))
        seg__write_answer(w);
}

static void seg__update_read(redisReply *reply, const char *err, void *ud);

/* Starts the backfill of the written version. */
static void seg__bf_reset(seg_write *w)
{
    char *bf = seg_skey(w->def.id, SEG_SKEY_BF);
    char ver[32];
    snprintf(ver, sizeof(ver), "%" PRId64, w->def.version);
    const char *keys[1] = { bf };
    size_t klen[1] = { bf ? strlen(bf) : 0 };
    const char *args[2] = { ver, "0" };
    size_t alen[2] = { strlen(ver), 1 };
    if (!bf) {
        seg__write_oom(w);
        return;
    }
    cdp_redis_eval(w->s->redis, w->s->scripts.bf_reset, seg__bf_reset_done, w, 1, keys, klen, 2,
                   args, alen);
    free(bf);
}

static void seg__index_reset_done(redisReply *reply, const char *err, void *ud)
{
    seg_write *w = ud;
    if (!seg__write_failed(w, reply, err))
        seg__bf_reset(w);
}

/* A created segment: a fresh member index for its incarnation, then the
 * backfill. */
static void seg__index_reset(seg_write *w)
{
    char *members = seg_skey(w->def.id, SEG_SKEY_MEMBERS), *idx = seg_skey(w->def.id, SEG_SKEY_IDX);
    char created[32];
    snprintf(created, sizeof(created), "%" PRId64, w->def.created_ms);
    if (!members || !idx) {
        free(members);
        free(idx);
        seg__write_oom(w);
        return;
    }
    const char *keys[2] = { members, idx };
    size_t klen[2] = { strlen(members), strlen(idx) };
    const char *args[1] = { created };
    size_t alen[1] = { strlen(created) };
    cdp_redis_eval(w->s->redis, w->s->scripts.index_reset, seg__index_reset_done, w, 2, keys,
                   klen, 1, args, alen);
    free(members);
    free(idx);
}

static void seg__put_done(redisReply *reply, const char *err, void *ud)
{
    seg_write *w = ud;
    if (seg__write_failed(w, reply, err))
        return;
    if (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING) {
        if (!strcmp(reply->str, "EXISTS")) {
            cdp_rpc_fail(w->call, GRPC_STATUS_ALREADY_EXISTS, "segment already exists: %s",
                         w->def.id);
        } else if (!strcmp(reply->str, "MISSING")) {
            cdp_rpc_fail(w->call, GRPC_STATUS_NOT_FOUND, "segment not found: %s", w->def.id);
        } else if (++w->attempts < SEG_CAS_ATTEMPTS) { /* CONFLICT: read again */
            cdp_redis_commandf(w->s->redis, SEG_KEY_DEFS, seg__update_read, w, "HGET %s %s",
                               SEG_KEY_DEFS, w->def.id);
            return;
        } else {
            cdp_rpc_fail(w->call, GRPC_STATUS_ABORTED,
                         "segment %s is being changed concurrently; retry", w->def.id);
        }
        seg__write_free(w);
        return;
    }
    seg_defs_reload(w->s);
    if (!w->expected) {
        seg__index_reset(w);
        return;
    }
    if (!w->rule_changed) {
        seg__write_answer(w);
        return;
    }
    seg__bf_reset(w);
}

/* Writes w->def (create when w->expected is NULL). */
static void seg__put(seg_write *w)
{
    free(w->json);
    w->json = seg_def_to_json(&w->def);
    if (!w->json) {
        seg__write_oom(w);
        return;
    }
    const char *keys[2] = { SEG_KEY_DEFS, SEG_KEY_DEFS_VERSION };
    size_t klen[2] = { strlen(keys[0]), strlen(keys[1]) };
    const char *exp = w->expected ? w->expected : "";
    const char *args[3] = { w->def.id, exp, w->json };
    size_t alen[3] = { strlen(w->def.id), strlen(exp), strlen(w->json) };
    cdp_redis_eval(w->s->redis, w->s->scripts.def_put, seg__put_done, w, 2, keys, klen, 3, args,
                   alen);
}

/* A fresh id "seg_<16 hex>". */
static int seg__gen_id(char *out, size_t outlen)
{
    unsigned char b[SEG_GEN_ID_BYTES];
    if (uv_random(NULL, NULL, b, sizeof(b), 0, NULL) != 0)
        return -1;
    int n = snprintf(out, outlen, "seg_");
    for (size_t i = 0; i < sizeof(b); i++)
        n += snprintf(out + n, outlen - (size_t)n, "%02x", b[i]);
    return 0;
}

void seg_create_segment(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__CreateSegmentRequest *req = (const Cdp__V1__CreateSegmentRequest *)msg;
    seg_svc *s = ud;
    char gen[SEG_ID_MAX + 1];
    const char *id = req->id;
    if (!id[0]) {
        if (seg__gen_id(gen, sizeof(gen)) != 0) {
            cdp_rpc_fail(call, GRPC_STATUS_INTERNAL, "cannot generate an id");
            return;
        }
        id = gen;
    } else if (seg__check_id(call, "segment.id", id) != 0) {
        return;
    }
    if (seg__check_text(call, req->name, req->description, 1) != 0)
        return;
    if (!req->rule[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment.rule: required");
        return;
    }
    seg_write *w = calloc(1, sizeof(*w));
    if (!w) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->s = s;
    w->call = call;
    w->rule_changed = 1;
    if (seg__set_rule(call, &w->def, req->rule) != 0) {
        seg__write_free(w);
        return;
    }
    w->def.id = strdup(id);
    w->def.name = strdup(req->name);
    w->def.description = strdup(req->description);
    w->def.version = 1;
    w->def.created_ms = w->def.updated_ms = seg_now(s);
    if (!w->def.id || !w->def.name || !w->def.description) {
        seg__write_oom(w);
        return;
    }
    seg__put(w);
}

/* The stored definition for an update arrived: apply the request to it. */
static void seg__update_read(redisReply *reply, const char *err, void *ud)
{
    seg_write *w = ud;
    const Cdp__V1__UpdateSegmentRequest *req = w->upd;
    if (seg__write_failed(w, reply, err))
        return;
    if (reply->type != REDIS_REPLY_STRING) {
        cdp_rpc_fail(w->call, GRPC_STATUS_NOT_FOUND, "segment not found: %s", req->id);
        seg__write_free(w);
        return;
    }
    seg_def_clear(&w->def);
    free(w->expected);
    w->expected = strndup(reply->str, reply->len);
    if (!w->expected || seg_def_from_json(&w->def, reply->str, reply->len) != 0) {
        cdp_rpc_fail(w->call, GRPC_STATUS_INTERNAL, "stored segment %s is malformed", req->id);
        seg__write_free(w);
        return;
    }
    if (req->name[0]) {
        free(w->def.name);
        w->def.name = strdup(req->name);
    }
    free(w->def.description);
    w->def.description = strdup(req->description);
    w->rule_changed = 0;
    if (req->rule[0] && strcmp(req->rule, w->def.rule) != 0) {
        char *old_canonical = strdup(w->def.canonical);
        if (seg__set_rule(w->call, &w->def, req->rule) != 0) {
            free(old_canonical);
            seg__write_free(w);
            return;
        }
        w->rule_changed = !old_canonical || strcmp(old_canonical, w->def.canonical) != 0;
        free(old_canonical);
    }
    w->def.version++;
    w->def.updated_ms = seg_now(w->s);
    if (!w->def.name || !w->def.description) {
        seg__write_oom(w);
        return;
    }
    seg__put(w);
}

void seg_update_segment(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__UpdateSegmentRequest *req = (const Cdp__V1__UpdateSegmentRequest *)msg;
    if (seg__check_id(call, "id", req->id) != 0 ||
        seg__check_text(call, req->name, req->description, 0) != 0 ||
        seg__check_rule_len(call, "segment.rule", req->rule) != 0)
        return;
    seg_write *w = calloc(1, sizeof(*w));
    if (!w) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->s = ud;
    w->call = call;
    w->upd = req;
    cdp_redis_commandf(w->s->redis, SEG_KEY_DEFS, seg__update_read, w, "HGET %s %s",
                       SEG_KEY_DEFS, req->id);
}

/* ------------------------------------------------------------------ get, list */

typedef struct {
    seg_svc *s;
    cdp_rpc_call *call;
    char *id;            /* get: the id asked for */
    int32_t page_size;
    char *after;         /* list: the page token */
} seg_read;

static void seg__read_free(seg_read *r)
{
    free(r->id);
    free(r->after);
    free(r);
}

/* A read of the segment `id` for call: checks the id, then allocates.
 * NULL after answering the call (bad id, out of memory). */
static seg_read *seg__read_new(cdp_rpc_call *call, void *ud, const char *id)
{
    if (seg__check_id(call, "id", id) != 0)
        return NULL;
    seg_read *r = calloc(1, sizeof(*r));
    if (!r || !(r->id = strdup(id))) {
        free(r);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    r->s = ud;
    r->call = call;
    return r;
}

static void seg__get_reply(redisReply *reply, const char *err, void *ud)
{
    seg_read *r = ud;
    if (cdp_rpc_fail_redis(r->call, reply, err)) {
        seg__read_free(r);
        return;
    }
    seg_def *d = calloc(1, sizeof(*d));
    if (reply->type != REDIS_REPLY_STRING) {
        cdp_rpc_fail(r->call, GRPC_STATUS_NOT_FOUND, "segment not found: %s", r->id);
        free(d);
    } else if (!d || seg_def_from_json(d, reply->str, reply->len) != 0) {
        cdp_rpc_fail(r->call, GRPC_STATUS_INTERNAL, "stored segment %s is malformed", r->id);
        free(d);
    } else {
        seg__answer_defs(r->s, r->call, d, 1, 0, NULL);
    }
    seg__read_free(r);
}

void seg_get_segment(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetSegmentRequest *req = (const Cdp__V1__GetSegmentRequest *)msg;
    seg_read *r = seg__read_new(call, ud, req->id);
    if (!r)
        return;
    cdp_redis_commandf(r->s->redis, SEG_KEY_DEFS, seg__get_reply, r, "HGET %s %s", SEG_KEY_DEFS,
                       req->id);
}

static int seg__def_id_cmp(const void *a, const void *b)
{
    return strcmp(((const seg_def *)a)->id, ((const seg_def *)b)->id);
}

static void seg__list_reply(redisReply *reply, const char *err, void *ud)
{
    seg_read *r = ud;
    if (cdp_rpc_fail_redis(r->call, reply, err)) {
        seg__read_free(r);
        return;
    }
    size_t n = reply->type == REDIS_REPLY_ARRAY ? reply->elements / 2 : 0, k = 0;
    seg_def *all = calloc(n ? n : 1, sizeof(seg_def));
    if (!all) {
        cdp_rpc_fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__read_free(r);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = reply->element[2 * i], *v = reply->element[2 * i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (r->after && strcmp(f->str, r->after) <= 0)
            continue;
        if (seg_def_from_json(&all[k], v->str, v->len) == 0)
            k++;
    }
    qsort(all, k, sizeof(seg_def), seg__def_id_cmp);
    size_t page = (size_t)r->page_size;
    const char *next = NULL;
    if (k > page) {
        for (size_t i = page; i < k; i++)
            seg_def_clear(&all[i]);
        k = page;
        next = all[k - 1].id;
    }
    seg__answer_defs(r->s, r->call, all, k, 1, next);
    seg__read_free(r);
}

void seg_list_segments(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ListSegmentsRequest *req = (const Cdp__V1__ListSegmentsRequest *)msg;
    if (req->page_size < 0 || req->page_size > SEG_PAGE_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must be 0 to %d",
                     SEG_PAGE_MAX);
        return;
    }
    if (req->page_token[0] && !seg_id_valid(req->page_token)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_token: malformed");
        return;
    }
    seg_read *r = calloc(1, sizeof(*r));
    if (!r || (req->page_token[0] && !(r->after = strdup(req->page_token)))) {
        free(r);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->s = ud;
    r->call = call;
    r->page_size = req->page_size ? req->page_size : SEG_PAGE_DEFAULT;
    cdp_redis_commandf(r->s->redis, SEG_KEY_DEFS, seg__list_reply, r, "HGETALL %s",
                       SEG_KEY_DEFS);
}

/* ------------------------------------------------------------------ delete */

static void seg__delete_index_done(redisReply *reply, const char *err, void *ud)
{
    seg_read *r = ud;
    if (!cdp_rpc_fail_redis(r->call, reply, err)) {
        Cdp__V1__DeleteSegmentResponse resp = CDP__V1__DELETE_SEGMENT_RESPONSE__INIT;
        resp.deleted = 1;
        cdp_rpc_reply(r->call, &resp.base);
    }
    seg__read_free(r);
}

static void seg__delete_done(redisReply *reply, const char *err, void *ud)
{
    seg_read *r = ud;
    if (cdp_rpc_fail_redis(r->call, reply, err)) {
        seg__read_free(r);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER || reply->integer == 0) {
        cdp_rpc_fail(r->call, GRPC_STATUS_NOT_FOUND, "segment not found: %s", r->id);
        seg__read_free(r);
        return;
    }
    seg_defs_reload(r->s);
    char *k[SEG_SKEY_COUNT];
    int ok = 1;
    for (int i = 0; i < SEG_SKEY_COUNT; i++)
        ok &= (k[i] = seg_skey(r->id, i)) != NULL;
    if (!ok) {
        cdp_rpc_fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__read_free(r);
    } else {
        /* one slot: the member index and backfill go in one command */
        cdp_redis_commandf(r->s->redis, k[0], seg__delete_index_done, r, "DEL %s %s %s %s", k[0],
                           k[1], k[2], k[3]);
    }
    for (int i = 0; i < SEG_SKEY_COUNT; i++)
        free(k[i]);
}

void seg_delete_segment(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__DeleteSegmentRequest *req = (const Cdp__V1__DeleteSegmentRequest *)msg;
    seg_read *r = seg__read_new(call, ud, req->id);
    if (!r)
        return;
    const char *keys[2] = { SEG_KEY_DEFS, SEG_KEY_DEFS_VERSION };
    size_t klen[2] = { strlen(keys[0]), strlen(keys[1]) };
    const char *args[1] = { r->id };
    size_t alen[1] = { strlen(r->id) };
    cdp_redis_eval(r->s->redis, r->s->scripts.def_del, seg__delete_done, r, 2, keys, klen, 1,
                   args, alen);
}

/* ------------------------------------------------------------------ validate */

void seg_validate_rule(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ValidateRuleRequest *req = (const Cdp__V1__ValidateRuleRequest *)msg;
    (void)ud;
    if (!req->rule[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "rule: required");
        return;
    }
    if (seg__check_rule_len(call, "rule", req->rule) != 0)
        return;
    seg_def d;
    seg_rule_error e;
    memset(&d, 0, sizeof(d));
    memset(&e, 0, sizeof(e));
    if (seg_def_set_rule(&d, req->rule, &e) != 0) {
        seg__rule_error(call, "rule", &e);
        seg_def_clear(&d);
        return;
    }
    Cdp__V1__ValidateRuleResponse resp = CDP__V1__VALIDATE_RULE_RESPONSE__INIT;
    resp.canonical_rule = d.canonical;
    resp.n_reads = d.nreads;
    resp.reads = d.reads;
    resp.time_based = d.time_based;
    cdp_rpc_reply(call, &resp.base);
    seg_def_clear(&d);
}

/* ------------------------------------------------------------------ backfill */

typedef struct {
    seg_read r;
    int exists;
    seg_bf_status bf;
    int pending;
    grpc_status_code code;
    char msg[SEG_ERR_MAX];
} seg_bf_read;

static void seg__bf_read_reply(redisReply *reply, const char *err, void *ud)
{
    seg_bf_read *b = ud;
    char msg[SEG_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code != GRPC_STATUS_OK) {
        b->code = code;
        snprintf(b->msg, sizeof(b->msg), "%s", msg);
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        b->exists = reply->integer > 0;
    } else {
        seg_bf_status_load(&b->bf, reply);
    }
    if (--b->pending > 0)
        return;
    if (b->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(b->r.call, b->code, "%s", b->msg);
    } else if (!b->exists) {
        cdp_rpc_fail(b->r.call, GRPC_STATUS_NOT_FOUND, "segment not found: %s", b->r.id);
    } else {
        seg_bf_msg m;
        seg__bf_msg(&m, b->r.id, &b->bf);
        cdp_rpc_reply(b->r.call, &m.m.base);
    }
    free(b->r.id);
    free(b);
}

void seg_get_backfill(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetBackfillRequest *req = (const Cdp__V1__GetBackfillRequest *)msg;
    if (seg__check_id(call, "segment_id", req->segment_id) != 0)
        return;
    seg_bf_read *b = calloc(1, sizeof(*b));
    char *key = seg_skey(req->segment_id, SEG_SKEY_BF);
    if (!b || !key || !(b->r.id = strdup(req->segment_id))) {
        free(b);
        free(key);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    b->r.s = ud;
    b->r.call = call;
    b->pending = 2;
    cdp_redis_commandf(b->r.s->redis, SEG_KEY_DEFS, seg__bf_read_reply, b, "HEXISTS %s %s",
                       SEG_KEY_DEFS, req->segment_id);
    cdp_redis_commandf(b->r.s->redis, key, seg__bf_read_reply, b, "HGETALL %s", key);
    free(key);
}
