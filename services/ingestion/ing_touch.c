/* ing_touch: see ing_touch.h. */
#include "ing_touch.h"

#include <stdlib.h>
#include <string.h>

#include "cdp_event.h"
#include "cdp_json.h"

int ing_is_consent_event(const Cdp__V1__Event *ev)
{
    return ev && ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK && ev->event &&
           strcmp(ev->event, ING_CONSENT_EVENT_NAME) == 0;
}

/* 1 when identity's answer carries merges. Consent folds each loser into
 * its survivor and follows the survivor's own merges, so every merge goes,
 * also one delivered with a master id that later absorbed its survivor. */
static int ing__has_merges(const Cdp__V1__ResolveResponse *r)
{
    return r && r->n_merges > 0;
}

size_t ing_consent_entries(const ing_batch *b, const size_t *idx, size_t n, size_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const ing_entry *e = &b->e[idx[i]];
        if (ing_is_consent_event(e->ev) || ing__has_merges(e->resolved))
            out[k++] = idx[i];
    }
    return k;
}


/* Adds s to the list (*v, *n) unless it is there. Returns 0 or -1. */
static int ing__add_name(char ***v, size_t *n, const char *s)
{
    if (!s || !s[0])
        return 0;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return 0;
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

static int ing__add_struct_keys(Cdp__V1__ProfileTouch *t, const Google__Protobuf__Struct *s)
{
    for (size_t i = 0; s && i < s->n_fields; i++)
        if (ing__add_name(&t->traits, &t->n_traits, s->fields[i]->key) != 0)
            return -1;
    return 0;
}


/* Traits profile writes: identify events only, context.traits and traits. */
static int ing__add_traits(Cdp__V1__ProfileTouch *t, const Cdp__V1__Event *ev)
{
    if (ev->type != CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY)
        return 0;
    const Google__Protobuf__Value *ctx = cdp_struct_get(ev->context, "traits");
    if (ctx && ctx->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE &&
        ing__add_struct_keys(t, ctx->struct_value) != 0)
        return -1;
    return ing__add_struct_keys(t, ev->traits);
}

static Cdp__V1__ProfileTouch *ing__touch_for(ing_touch_build *o, const char *master)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->touches[i].master_id, master) == 0)
            return &o->touches[i];
    if (o->n == o->cap)
        return NULL; /* cap is the number of entries: cannot happen */
    Cdp__V1__ProfileTouch *t = &o->touches[o->n];
    cdp__v1__profile_touch__init(t);
    if (!(t->master_id = strdup(master)))
        return NULL;
    o->touchp[o->n++] = t;
    return t;
}

static int ing__touch_entry(ing_touch_build *o, const ing_entry *e)
{
    const Cdp__V1__Event *ev = e->ev;
    const Cdp__V1__ResolveResponse *r = e->resolved;
    if (!ev || !r || !r->master_id || !r->master_id[0])
        return 0;
    Cdp__V1__ProfileTouch *t = ing__touch_for(o, r->master_id);
    if (!t)
        return -1;
    const char *channel = ev->channel;
    if (ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE && ev->message && ev->message->channel[0])
        channel = ev->message->channel;
    if (ing__add_name(&t->events, &t->n_events, cdp_event_count_name(ev)) != 0 ||
        ing__add_name(&t->channels, &t->n_channels, channel) != 0 || ing__add_traits(t, ev) != 0)
        return -1;
    if (cdp_struct_get(ev->properties, "revenue"))
        t->revenue = 1;
    for (size_t m = 0; m < r->n_merges; m++)
        if (strcmp(r->merges[m]->survivor_id, r->master_id) == 0 &&
            ing__add_name(&t->merged_ids, &t->n_merged_ids, r->merges[m]->loser_id) != 0)
            return -1;
    char *mid = strdup(ev->message_id ? ev->message_id : "");
    if (!mid)
        return -1;
    if (t->message_id != protobuf_c_empty_string)
        free(t->message_id);
    t->message_id = mid;
    return 0;
}

int ing_touch_build_make(ing_touch_build *out, const ing_batch *b, const size_t *idx, size_t n)
{
    memset(out, 0, sizeof *out);
    cdp__v1__evaluate_request__init(&out->req);
    out->cap = n ? n : 1;
    out->touches = calloc(out->cap, sizeof *out->touches);
    out->touchp = calloc(out->cap, sizeof *out->touchp);
    if (!out->touches || !out->touchp) {
        ing_touch_build_free(out);
        return -1;
    }
    for (size_t k = 0; k < n; k++)
        if (ing__touch_entry(out, &b->e[idx[k]]) != 0) {
            ing_touch_build_free(out);
            return -1;
        }
    out->req.profiles = out->touchp;
    out->req.n_profiles = out->n;
    return 0;
}

static void ing__free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void ing_touch_build_free(ing_touch_build *out)
{
    for (size_t i = 0; out->touches && i < out->n; i++) {
        Cdp__V1__ProfileTouch *t = &out->touches[i];
        free(t->master_id);
        if (t->message_id != protobuf_c_empty_string)
            free(t->message_id);
        ing__free_names(t->events, t->n_events);
        ing__free_names(t->traits, t->n_traits);
        ing__free_names(t->channels, t->n_channels);
        ing__free_names(t->merged_ids, t->n_merged_ids);
    }
    free(out->touches);
    free(out->touchp);
    memset(out, 0, sizeof *out);
}
