/* prf_view: ProfileView from a stored profile (see prf_view.h).
 *
 * GetProfile builds one view per call, made of a few hundred small pieces
 * (a timeline entry alone is five). They all come from one arena, freed at
 * once, instead of one malloc each: measured, per-piece allocation was a
 * visible share of GetProfile's CPU. The traits Struct is the exception:
 * cdp_json builds it and cdp_struct_free releases it. */
#include "prf_view.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp_json.h"
#include "prf_event.h"

/* ================================================================= arena */

enum { PRF_ARENA_BLOCK = 4096 };

typedef struct prf_block {
    struct prf_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} prf_block;

/* The view and the arena its pieces come from; the view is first, so a
 * Cdp__V1__ProfileView * handed out is also a prf__view_mem *. */
typedef struct {
    Cdp__V1__ProfileView view;
    prf_block *blocks;
} prf__view_mem;

/* n bytes aligned for any type, or NULL. */
static void *prf__alloc(prf__view_mem *m, size_t n)
{
    const size_t align = alignof(max_align_t);
    n = (n + align - 1) / align * align;
    prf_block *b = m->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > PRF_ARENA_BLOCK ? n : PRF_ARENA_BLOCK;
        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = m->blocks;
        m->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static char *prf__strndup(prf__view_mem *m, const char *s, size_t n)
{
    char *d = prf__alloc(m, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *prf__strdup(prf__view_mem *m, const char *s)
{
    return prf__strndup(m, s, strlen(s));
}

/* An array of n pointers (at least one slot, so never NULL on success). */
static void *prf__array(prf__view_mem *m, size_t n, size_t size)
{
    return prf__alloc(m, (n ? n : 1) * size);
}

static Google__Protobuf__Timestamp *prf__ts(prf__view_mem *m, int64_t ms)
{
    Google__Protobuf__Timestamp *t = prf__alloc(m, sizeof(*t));
    if (t) {
        google__protobuf__timestamp__init(t);
        prf_ts_to_proto(ms, t);
    }
    return t;
}

/* ================================================================ pieces */

static int prf__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int prf__ids(prf__view_mem *m, const prf_profile *p)
{
    Cdp__V1__ProfileView *v = &m->view;
    const char **sorted = malloc((p->n_ids ? p->n_ids : 1) * sizeof(*sorted));
    v->identifiers = prf__array(m, p->n_ids, sizeof(*v->identifiers));
    int rc = (sorted && v->identifiers) ? PRF_OK : PRF_ENOMEM;
    for (size_t i = 0; rc == PRF_OK && i < p->n_ids; i++)
        sorted[i] = p->ids[i];
    if (rc == PRF_OK)
        qsort(sorted, p->n_ids, sizeof(*sorted), prf__cmp_str);
    for (size_t i = 0; rc == PRF_OK && i < p->n_ids; i++) {
        const char *type, *value;
        size_t type_len;
        if (prf_id_split(sorted[i], &type, &type_len, &value) != 0)
            continue;
        Cdp__V1__Identifier *id = prf__alloc(m, sizeof(*id));
        if (!id) {
            rc = PRF_ENOMEM;
            break;
        }
        cdp__v1__identifier__init(id);
        id->type = prf__strndup(m, type, type_len);
        id->value = prf__strdup(m, value);
        if (!id->type || !id->value)
            rc = PRF_ENOMEM;
        v->identifiers[v->n_identifiers++] = id;
    }
    free(sorted);
    return rc;
}

static int prf__traits(prf__view_mem *m, const prf_profile *p)
{
    json_t *obj = json_object();
    if (!obj)
        return PRF_ENOMEM;
    for (size_t i = 0; i < p->n_traits; i++) {
        json_t *val = json_loads(p->traits[i].json, JSON_DECODE_ANY, NULL);
        if (val)
            json_object_set_new(obj, p->traits[i].key, val);
    }
    m->view.traits = cdp_json_to_struct(obj);
    json_decref(obj);
    return m->view.traits ? PRF_OK : PRF_ENOMEM;
}

static int prf__cmp_count(const void *a, const void *b)
{
    return strcmp((*(Cdp__V1__ProfileView__EventCountsEntry *const *)a)->key,
                  (*(Cdp__V1__ProfileView__EventCountsEntry *const *)b)->key);
}

static int prf__counts(prf__view_mem *m, const prf_profile *p)
{
    Cdp__V1__ProfileView *v = &m->view;
    v->event_counts = prf__array(m, p->n_counts, sizeof(*v->event_counts));
    if (!v->event_counts)
        return PRF_ENOMEM;
    for (size_t i = 0; i < p->n_counts; i++) {
        Cdp__V1__ProfileView__EventCountsEntry *e = prf__alloc(m, sizeof(*e));
        if (!e)
            return PRF_ENOMEM;
        cdp__v1__profile_view__event_counts_entry__init(e);
        e->key = prf__strdup(m, p->counts[i].name);
        e->value = p->counts[i].n;
        if (!e->key)
            return PRF_ENOMEM;
        v->event_counts[v->n_event_counts++] = e;
    }
    qsort(v->event_counts, v->n_event_counts, sizeof(*v->event_counts), prf__cmp_count);
    return PRF_OK;
}

/* Newest interaction first; the channel name breaks ties. */
static int prf__cmp_channel(const void *a, const void *b)
{
    const Cdp__V1__ChannelInteraction *x = *(Cdp__V1__ChannelInteraction *const *)a;
    const Cdp__V1__ChannelInteraction *y = *(Cdp__V1__ChannelInteraction *const *)b;
    if (x->last_at->seconds != y->last_at->seconds)
        return x->last_at->seconds > y->last_at->seconds ? -1 : 1;
    if (x->last_at->nanos != y->last_at->nanos)
        return x->last_at->nanos > y->last_at->nanos ? -1 : 1;
    return strcmp(x->channel, y->channel);
}

static int prf__channels(prf__view_mem *m, const prf_profile *p)
{
    Cdp__V1__ProfileView *v = &m->view;
    v->channels = prf__array(m, p->n_channels, sizeof(*v->channels));
    if (!v->channels)
        return PRF_ENOMEM;
    for (size_t i = 0; i < p->n_channels; i++) {
        Cdp__V1__ChannelInteraction *c = prf__alloc(m, sizeof(*c));
        if (!c)
            return PRF_ENOMEM;
        cdp__v1__channel_interaction__init(c);
        c->channel = prf__strdup(m, p->channels[i].channel);
        c->last_event = prf__strdup(m, p->channels[i].event);
        c->last_at = prf__ts(m, p->channels[i].ts);
        if (!c->channel || !c->last_event || !c->last_at)
            return PRF_ENOMEM;
        v->channels[v->n_channels++] = c;
    }
    qsort(v->channels, v->n_channels, sizeof(*v->channels), prf__cmp_channel);
    return PRF_OK;
}

static int prf__cmp_tl_desc(const void *a, const void *b)
{
    return prf_tl_cmp(*(const prf_tl_entry *const *)b, *(const prf_tl_entry *const *)a);
}

static int prf__tl_entry(prf__view_mem *m, const prf_tl_parts *t)
{
    Cdp__V1__ProfileView *v = &m->view;
    Cdp__V1__TimelineEntry *e = prf__alloc(m, sizeof(*e));
    if (!e)
        return PRF_ENOMEM;
    cdp__v1__timeline_entry__init(e);
    e->message_id = prf__strndup(m, t->message_id, t->message_id_len);
    e->type = (Cdp__V1__EventType)t->type;
    e->event = prf__strdup(m, t->event);
    e->channel = prf__strndup(m, t->channel, t->channel_len);
    e->timestamp = prf__ts(m, t->ts);
    if (!e->message_id || !e->event || !e->channel || !e->timestamp)
        return PRF_ENOMEM;
    v->timeline[v->n_timeline++] = e;
    return PRF_OK;
}

static int prf__timeline(prf__view_mem *m, const prf_profile *p, size_t limit)
{
    size_t n = p->n_timeline, keep = n < limit ? n : limit;
    const prf_tl_entry **order = malloc((n ? n : 1) * sizeof(*order));
    m->view.timeline = prf__array(m, keep, sizeof(*m->view.timeline));
    int rc = (order && m->view.timeline) ? PRF_OK : PRF_ENOMEM;
    for (size_t i = 0; rc == PRF_OK && i < n; i++)
        order[i] = &p->timeline[i];
    if (rc == PRF_OK)
        qsort(order, n, sizeof(*order), prf__cmp_tl_desc);
    for (size_t i = 0; rc == PRF_OK && i < n && m->view.n_timeline < keep; i++) {
        prf_tl_parts t;
        if (prf_tl_member_parse(order[i]->member, &t) == 0)
            rc = prf__tl_entry(m, &t);
    }
    free(order);
    return rc;
}

static int prf__scalars(prf__view_mem *m, const prf_profile *p, const char *master_id)
{
    Cdp__V1__ProfileView *v = &m->view;
    v->master_id = prf__strdup(m, master_id);
    v->total_events = p->total;
    v->revenue = p->revenue;
    if (p->first_seen != PRF_TS_NONE && !(v->first_seen = prf__ts(m, p->first_seen)))
        return PRF_ENOMEM;
    if (p->last_seen != PRF_TS_NONE && !(v->last_seen = prf__ts(m, p->last_seen)))
        return PRF_ENOMEM;
    v->merged_ids = prf__array(m, p->n_folded, sizeof(*v->merged_ids));
    if (!v->master_id || !v->merged_ids)
        return PRF_ENOMEM;
    for (size_t i = 0; i < p->n_folded; i++)
        if (!(v->merged_ids[v->n_merged_ids++] = prf__strdup(m, p->folded[i])))
            return PRF_ENOMEM;
    qsort(v->merged_ids, v->n_merged_ids, sizeof(*v->merged_ids), prf__cmp_str);
    return PRF_OK;
}

/* ================================================================ public */

Cdp__V1__ProfileView *prf_view_build(const prf_profile *p, const char *master_id,
                                     size_t timeline_limit)
{
    prf__view_mem *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    cdp__v1__profile_view__init(&m->view);
    if (prf__scalars(m, p, master_id) || prf__ids(m, p) || prf__traits(m, p) ||
        prf__counts(m, p) || prf__channels(m, p) || prf__timeline(m, p, timeline_limit)) {
        prf_view_free(&m->view);
        return NULL;
    }
    return &m->view;
}

void prf_view_free(Cdp__V1__ProfileView *v)
{
    if (!v)
        return;
    prf__view_mem *m = (prf__view_mem *)v;
    cdp_struct_free(m->view.traits);
    while (m->blocks) {
        prf_block *next = m->blocks->next;
        free(m->blocks);
        m->blocks = next;
    }
    free(m);
}
