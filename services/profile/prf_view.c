/* prf_view: ProfileView from a stored profile (see prf_view.h).
 *
 * Every part of the view is malloc'd so that protobuf-c's free_unpacked can
 * release it, except the traits Struct, which cdp_json built and
 * cdp_struct_free releases. */
#include "prf_view.h"

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp_json.h"
#include "prf_event.h"

static Google__Protobuf__Timestamp *prf__ts(int64_t ms)
{
    Google__Protobuf__Timestamp *t = malloc(sizeof(*t));
    if (t) {
        google__protobuf__timestamp__init(t);
        prf_ts_to_proto(ms, t);
    }
    return t;
}

static int prf__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A sorted, malloc'd copy of a string array (n strings). */
static char **prf__sorted_strs(char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            while (i > 0)
                free(out[--i]);
            free(out);
            return NULL;
        }
    }
    qsort(out, n, sizeof(*out), prf__cmp_str);
    return out;
}

static int prf__ids(const prf_profile *p, Cdp__V1__ProfileView *v)
{
    char **sorted = prf__sorted_strs(p->ids, p->n_ids);
    v->identifiers = calloc(p->n_ids ? p->n_ids : 1, sizeof(*v->identifiers));
    int rc = (sorted && v->identifiers) ? PRF_OK : PRF_ENOMEM;
    for (size_t i = 0; rc == PRF_OK && i < p->n_ids; i++) {
        char *type, *value;
        if (prf_id_decode(sorted[i], &type, &value) != 0)
            continue;
        Cdp__V1__Identifier *id = malloc(sizeof(*id));
        if (!id) {
            free(type);
            free(value);
            rc = PRF_ENOMEM;
            break;
        }
        cdp__v1__identifier__init(id);
        id->type = type;
        id->value = value;
        v->identifiers[v->n_identifiers++] = id;
    }
    for (size_t i = 0; sorted && i < p->n_ids; i++)
        free(sorted[i]);
    free(sorted);
    return rc;
}

static int prf__traits(const prf_profile *p, Cdp__V1__ProfileView *v)
{
    json_t *obj = json_object();
    if (!obj)
        return PRF_ENOMEM;
    for (size_t i = 0; i < p->n_traits; i++) {
        json_t *val = json_loads(p->traits[i].json, JSON_DECODE_ANY, NULL);
        if (val)
            json_object_set_new(obj, p->traits[i].key, val);
    }
    v->traits = cdp_json_to_struct(obj);
    json_decref(obj);
    return v->traits ? PRF_OK : PRF_ENOMEM;
}

static int prf__cmp_count(const void *a, const void *b)
{
    return strcmp((*(Cdp__V1__ProfileView__EventCountsEntry *const *)a)->key,
                  (*(Cdp__V1__ProfileView__EventCountsEntry *const *)b)->key);
}

static int prf__counts(const prf_profile *p, Cdp__V1__ProfileView *v)
{
    v->event_counts = calloc(p->n_counts ? p->n_counts : 1, sizeof(*v->event_counts));
    if (!v->event_counts)
        return PRF_ENOMEM;
    for (size_t i = 0; i < p->n_counts; i++) {
        Cdp__V1__ProfileView__EventCountsEntry *e = malloc(sizeof(*e));
        char *key = strdup(p->counts[i].name);
        if (!e || !key) {
            free(e);
            free(key);
            return PRF_ENOMEM;
        }
        cdp__v1__profile_view__event_counts_entry__init(e);
        e->key = key;
        e->value = p->counts[i].n;
        v->event_counts[v->n_event_counts++] = e;
    }
    qsort(v->event_counts, v->n_event_counts, sizeof(*v->event_counts), prf__cmp_count);
    return PRF_OK;
}

/* Newest interaction first; the channel name breaks ties. */
static int prf__cmp_channel(const void *a, const void *b)
{
    const prf_channel *x = *(const prf_channel *const *)a, *y = *(const prf_channel *const *)b;
    if (x->ts != y->ts)
        return x->ts > y->ts ? -1 : 1;
    return strcmp(x->channel, y->channel);
}

static int prf__channels(const prf_profile *p, Cdp__V1__ProfileView *v)
{
    size_t n = p->n_channels;
    const prf_channel **order = malloc((n ? n : 1) * sizeof(*order));
    v->channels = calloc(n ? n : 1, sizeof(*v->channels));
    int rc = (order && v->channels) ? PRF_OK : PRF_ENOMEM;
    for (size_t i = 0; rc == PRF_OK && i < n; i++)
        order[i] = &p->channels[i];
    if (rc == PRF_OK)
        qsort(order, n, sizeof(*order), prf__cmp_channel);
    for (size_t i = 0; rc == PRF_OK && i < n; i++) {
        Cdp__V1__ChannelInteraction *c = malloc(sizeof(*c));
        if (!c) {
            rc = PRF_ENOMEM;
            break;
        }
        cdp__v1__channel_interaction__init(c);
        v->channels[v->n_channels++] = c;
        c->channel = strdup(order[i]->channel);
        c->last_event = strdup(order[i]->event);
        c->last_at = prf__ts(order[i]->ts);
        if (!c->channel || !c->last_event || !c->last_at)
            rc = PRF_ENOMEM;
    }
    free(order);
    return rc;
}

static int prf__cmp_tl_desc(const void *a, const void *b)
{
    return prf_tl_cmp(*(const prf_tl_entry *const *)b, *(const prf_tl_entry *const *)a);
}

static int prf__timeline(const prf_profile *p, size_t limit, Cdp__V1__ProfileView *v)
{
    size_t n = p->n_timeline;
    const prf_tl_entry **order = malloc((n ? n : 1) * sizeof(*order));
    v->timeline = calloc(n < limit ? (n ? n : 1) : (limit ? limit : 1), sizeof(*v->timeline));
    int rc = (order && v->timeline) ? PRF_OK : PRF_ENOMEM;
    for (size_t i = 0; rc == PRF_OK && i < n; i++)
        order[i] = &p->timeline[i];
    if (rc == PRF_OK)
        qsort(order, n, sizeof(*order), prf__cmp_tl_desc);
    for (size_t i = 0; rc == PRF_OK && i < n && v->n_timeline < limit; i++) {
        prf_tl_decoded d;
        if (prf_tl_member_decode(order[i]->member, &d) != 0)
            continue;
        Cdp__V1__TimelineEntry *e = malloc(sizeof(*e));
        Google__Protobuf__Timestamp *ts = prf__ts(d.ts);
        if (!e || !ts) {
            free(e);
            free(ts);
            prf_tl_decoded_free(&d);
            rc = PRF_ENOMEM;
            break;
        }
        cdp__v1__timeline_entry__init(e);
        e->message_id = d.message_id;
        e->type = (Cdp__V1__EventType)d.type;
        e->event = d.event;
        e->channel = d.channel;
        e->timestamp = ts;
        v->timeline[v->n_timeline++] = e;
    }
    free(order);
    return rc;
}

static int prf__scalars(const prf_profile *p, const char *master_id, Cdp__V1__ProfileView *v)
{
    v->master_id = strdup(master_id);
    v->total_events = p->total;
    v->revenue = p->revenue;
    if (p->first_seen != PRF_TS_NONE)
        v->first_seen = prf__ts(p->first_seen);
    if (p->last_seen != PRF_TS_NONE)
        v->last_seen = prf__ts(p->last_seen);
    v->merged_ids = prf__sorted_strs(p->folded, p->n_folded);
    if (v->merged_ids)
        v->n_merged_ids = p->n_folded;
    int ok = v->master_id && v->merged_ids &&
             (p->first_seen == PRF_TS_NONE || v->first_seen) &&
             (p->last_seen == PRF_TS_NONE || v->last_seen);
    return ok ? PRF_OK : PRF_ENOMEM;
}

Cdp__V1__ProfileView *prf_view_build(const prf_profile *p, const char *master_id,
                                     size_t timeline_limit)
{
    Cdp__V1__ProfileView *v = malloc(sizeof(*v));
    if (!v)
        return NULL;
    cdp__v1__profile_view__init(v);
    if (prf__scalars(p, master_id, v) || prf__ids(p, v) || prf__traits(p, v) ||
        prf__counts(p, v) || prf__channels(p, v) || prf__timeline(p, timeline_limit, v)) {
        prf_view_free(v);
        return NULL;
    }
    return v;
}

void prf_view_free(Cdp__V1__ProfileView *v)
{
    if (!v)
        return;
    cdp_struct_free(v->traits);
    v->traits = NULL;
    cdp__v1__profile_view__free_unpacked(v, NULL);
}
