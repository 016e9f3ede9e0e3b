/* ing_batch: one pipeline batch and the pure steps over it (see ing_batch.h). */
#include "ing_batch.h"

#include <grpc/status.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ing_event.h"

#define ING_MS_PER_S 1000
#define ING_NS_PER_MS 1000000
#define ING_BATCH_INITIAL_CAP 64
/* Field/value pairs of a stream entry as the append script writes them. */
#define ING_FIELD_MID "mid"
#define ING_FIELD_EV "ev"

/* ------------------------------------------------------------------ entries */

void ing_batch_init(ing_batch *b)
{
    memset(b, 0, sizeof *b);
}

static void ing__entry_clear(ing_entry *e)
{
    free(e->message_id);
    free(e->data);
    if (e->ev)
        cdp__v1__event__free_unpacked(e->ev, NULL);
    if (e->resolved)
        cdp__v1__resolve_response__free_unpacked(e->resolved, NULL);
    memset(e, 0, sizeof *e);
}

void ing_batch_clear(ing_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        ing__entry_clear(&b->e[i]);
    b->n = 0;
}

void ing_batch_free(ing_batch *b)
{
    ing_batch_clear(b);
    free(b->e);
    memset(b, 0, sizeof *b);
}

void ing_entry_fail(ing_entry *e, const char *fmt, ...)
{
    if (e->state == ING_ENTRY_FAILED)
        return;
    e->state = ING_ENTRY_FAILED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof e->reason, fmt, ap);
    va_end(ap);
}

static ing_entry *ing__batch_push(ing_batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : ING_BATCH_INITIAL_CAP;
        ing_entry *e = realloc(b->e, cap * sizeof *e);
        if (!e)
            return NULL;
        b->e = e;
        b->cap = cap;
    }
    ing_entry *e = &b->e[b->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static char *ing__dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* Copies the mid and ev fields of an entry's field/value array. */
static int ing__entry_fields(ing_entry *e, const redisReply *fields)
{
    for (size_t j = 0; j + 1 < fields->elements; j += 2) {
        const redisReply *f = fields->element[j], *v = fields->element[j + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, ING_FIELD_MID) == 0 && !e->message_id) {
            if (!(e->message_id = ing__dup(v->str, v->len)))
                return -1;
        } else if (strcmp(f->str, ING_FIELD_EV) == 0 && !e->data) {
            if (!(e->data = malloc(v->len ? v->len : 1)))
                return -1;
            memcpy(e->data, v->str, v->len);
            e->len = v->len;
        }
    }
    return 0;
}

int ing_batch_add(ing_batch *b, const char *stream_id, size_t idlen, const redisReply *fields)
{
    ing_entry *e = ing__batch_push(b);
    if (!e)
        return -1;
    snprintf(e->stream_id, sizeof e->stream_id, "%.*s", (int)idlen, stream_id);
    if (!fields || fields->type != REDIS_REPLY_ARRAY) {
        e->state = ING_ENTRY_DONE;
        e->message_id = ing__dup("", 0);
        return e->message_id ? 0 : -1;
    }
    if (ing__entry_fields(e, fields) != 0)
        return -1;
    if (!e->message_id && !(e->message_id = ing__dup("", 0)))
        return -1;
    if (e->data)
        e->ev = cdp__v1__event__unpack(NULL, e->len, e->data);
    if (!e->ev) {
        ing_entry_fail(e, "unreadable event in the log");
        e->force = 1;
    }
    return 0;
}

int ing_batch_holds(const ing_batch *b, const char *stream_id, size_t idlen)
{
    for (size_t i = 0; i < b->n; i++)
        if (strlen(b->e[i].stream_id) == idlen && memcmp(b->e[i].stream_id, stream_id, idlen) == 0)
            return 1;
    return 0;
}

static int ing__held(const ing_batch *const *held, size_t n_held, const redisReply *id)
{
    for (size_t k = 0; k < n_held; k++)
        if (ing_batch_holds(held[k], id->str, id->len))
            return 1;
    return 0;
}

int ing_batch_add_entries_except(ing_batch *b, const redisReply *entries,
                                 const ing_batch *const *held, size_t n_held)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY)
        return -1;
    int added = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *en = entries->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING)
            return -1;
        if (ing__held(held, n_held, en->element[0]))
            continue;
        if (ing_batch_add(b, en->element[0]->str, en->element[0]->len, en->element[1]) != 0)
            return -1;
        added++;
    }
    return added;
}

int ing_batch_add_entries(ing_batch *b, const redisReply *entries)
{
    return ing_batch_add_entries_except(b, entries, NULL, 0);
}

size_t ing_batch_in_state(const ing_batch *b, ing_entry_state state, size_t *idx)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].state == state)
            idx[n++] = i;
    return n;
}

size_t ing_batch_live(const ing_batch *b, size_t *idx)
{
    return ing_batch_in_state(b, ING_ENTRY_LIVE, idx);
}

size_t ing_batch_unresolved(const ing_batch *b, size_t *idx, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n && n < max; i++)
        if (b->e[i].state == ING_ENTRY_LIVE && !b->e[i].resolved)
            idx[n++] = i;
    return n;
}

void ing_batch_reset(ing_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        ing_entry *e = &b->e[i];
        if ((e->state == ING_ENTRY_FAILED && !e->force) || e->state == ING_ENTRY_APPLIED) {
            e->state = ING_ENTRY_LIVE;
            e->reason[0] = '\0';
        }
        if (e->resolved) {
            cdp__v1__resolve_response__free_unpacked(e->resolved, NULL);
            e->resolved = NULL;
        }
    }
}

int64_t ing_batch_oldest_received_ms(const ing_batch *b)
{
    int64_t oldest = 0;
    for (size_t i = 0; i < b->n; i++) {
        const Cdp__V1__Event *ev = b->e[i].ev;
        if (!ev || !ev->received_at)
            continue;
        int64_t ms = ev->received_at->seconds * ING_MS_PER_S + ev->received_at->nanos / ING_NS_PER_MS;
        if (oldest == 0 || ms < oldest)
            oldest = ms;
    }
    return oldest;
}

/* ------------------------------------------------------------------ identity */

void ing_resolve_build_free(ing_resolve_build *out)
{
    free(out->reqs);
    free(out->reqp);
    free(out->ids);
    free(out->idp);
    memset(out, 0, sizeof *out);
}

int ing_resolve_build_make(ing_resolve_build *out, const ing_batch *b, const size_t *idx, size_t n)
{
    memset(out, 0, sizeof *out);
    size_t total = 0;
    for (size_t k = 0; k < n; k++)
        total += ing_event_identifier_count(b->e[idx[k]].ev);
    out->reqs = calloc(n ? n : 1, sizeof *out->reqs);
    out->reqp = calloc(n ? n : 1, sizeof *out->reqp);
    out->ids = calloc(total ? total : 1, sizeof *out->ids);
    out->idp = calloc(total ? total : 1, sizeof *out->idp);
    ing_ident_ref *refs = calloc(total ? total : 1, sizeof *refs);
    if (!out->reqs || !out->reqp || !out->ids || !out->idp || !refs) {
        free(refs);
        ing_resolve_build_free(out);
        return -1;
    }
    size_t used = 0;
    for (size_t k = 0; k < n; k++) {
        const Cdp__V1__Event *ev = b->e[idx[k]].ev;
        Cdp__V1__ResolveRequest *r = &out->reqs[k];
        cdp__v1__resolve_request__init(r);
        r->message_id = ev->message_id;
        /* The pipeline carries every merge to profile, including those
         * made by direct Resolve calls (see docs/identity.md). */
        r->deliver_merges = 1;
        r->identifiers = &out->idp[used];
        size_t m = ing_event_identifiers(ev, refs + used, total - used);
        for (size_t j = 0; j < m; j++) {
            Cdp__V1__Identifier *id = &out->ids[used + j];
            cdp__v1__identifier__init(id);
            id->type = (char *)refs[used + j].type;
            id->value = (char *)refs[used + j].value;
            out->idp[used + j] = id;
        }
        r->n_identifiers = m;
        used += m;
        out->reqp[k] = r;
    }
    free(refs);
    cdp__v1__resolve_batch_request__init(&out->req);
    out->req.requests = out->reqp;
    out->req.n_requests = n;
    return 0;
}

/* An owned copy of a message of the generated type (pack, then unpack). */
static Cdp__V1__ResolveResponse *ing__copy_resolved(const Cdp__V1__ResolveResponse *r)
{
    size_t len = cdp__v1__resolve_response__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    cdp__v1__resolve_response__pack(r, buf);
    Cdp__V1__ResolveResponse *copy = cdp__v1__resolve_response__unpack(NULL, len, buf);
    free(buf);
    return copy;
}

/* Why identity gave no master id, from its drop list. */
static void ing__fail_unresolved(ing_entry *e, const Cdp__V1__ResolveResponse *r)
{
    if (r->n_dropped > 0 && r->dropped[0] && r->dropped[0]->identifier) {
        const Cdp__V1__DroppedIdentifier *d = r->dropped[0];
        ing_entry_fail(e, "identity returned no master id (%s dropped: %s)", d->identifier->type,
                       d->reason ? d->reason : "");
        return;
    }
    ing_entry_fail(e, "identity returned no master id");
}

int ing_batch_take_resolve(ing_batch *b, const size_t *idx, size_t n,
                           const Cdp__V1__ResolveBatchResponse *resp)
{
    if (!resp || resp->n_results != n)
        return -1;
    for (size_t k = 0; k < n; k++) {
        ing_entry *e = &b->e[idx[k]];
        const Cdp__V1__ResolveResponse *r = resp->results[k];
        if (!r || !r->master_id || r->master_id[0] == '\0') {
            if (r)
                ing__fail_unresolved(e, r);
            else
                ing_entry_fail(e, "identity returned no master id");
            continue;
        }
        if (e->resolved)
            cdp__v1__resolve_response__free_unpacked(e->resolved, NULL);
        e->resolved = ing__copy_resolved(r);
        if (!e->resolved)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ profile */

void ing_apply_build_free(ing_apply_build *out)
{
    free(out->evs);
    free(out->evp);
    memset(out, 0, sizeof *out);
}

int ing_apply_build_make(ing_apply_build *out, const ing_batch *b, const size_t *idx, size_t n)
{
    memset(out, 0, sizeof *out);
    out->evs = calloc(n ? n : 1, sizeof *out->evs);
    out->evp = calloc(n ? n : 1, sizeof *out->evp);
    if (!out->evs || !out->evp) {
        ing_apply_build_free(out);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        const ing_entry *e = &b->e[idx[k]];
        Cdp__V1__ResolvedEvent *r = &out->evs[k];
        cdp__v1__resolved_event__init(r);
        r->event = e->ev;
        if (e->resolved) {
            r->master_id = e->resolved->master_id;
            r->merges = e->resolved->merges;
            r->n_merges = e->resolved->n_merges;
            r->identifiers = e->resolved->identifiers;
            r->n_identifiers = e->resolved->n_identifiers;
        }
        out->evp[k] = r;
    }
    cdp__v1__apply_events_request__init(&out->req);
    out->req.events = out->evp;
    out->req.n_events = n;
    return 0;
}

/* ------------------------------------------------------------------ retry policy */

int ing_status_is_rejection(int grpc_code)
{
    switch (grpc_code) {
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
        return 1;
    default:
        return 0;
    }
}

int ing_backoff_next(int cur_ms, int min_ms, int max_ms)
{
    if (max_ms < min_ms)
        max_ms = min_ms;
    if (cur_ms < min_ms)
        return min_ms;
    return cur_ms > max_ms / 2 ? max_ms : cur_ms * 2;
}
