/* seg_defs: definitions, their stored JSON and the snapshot index
 * (seg_defs.h). */
#include "seg_defs.h"

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

enum { SEG_DEP_TEXT_MAX = 512 };

/* ------------------------------------------------------------------ one definition */

/* Frees the rule and everything derived from it; the rest of d stays. */
static void seg__def_clear_rule(seg_def *d)
{
    free(d->rule);
    free(d->canonical);
    free(d->parsed);
    for (size_t i = 0; i < d->nreads; i++)
        free(d->reads[i]);
    free(d->reads);
    if (d->r)
        seg_rule_free(d->r);
    d->rule = d->canonical = d->parsed = NULL;
    d->reads = NULL;
    d->nreads = 0;
    d->r = NULL;
}

void seg_def_clear(seg_def *d)
{
    free(d->id);
    free(d->name);
    free(d->description);
    seg__def_clear_rule(d);
    memset(d, 0, sizeof(*d));
}

/* Fills d->reads from d->r. Returns 0 or -1. */
static int seg__def_reads(seg_def *d)
{
    const seg_dep *deps;
    size_t n = seg_rule_deps(d->r, &deps);
    d->reads = calloc(n ? n : 1, sizeof(char *));
    if (!d->reads)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char buf[SEG_DEP_TEXT_MAX];
        if (seg_dep_format(&deps[i], buf, sizeof(buf)) < 0 || !(d->reads[i] = strdup(buf)))
            return -1;
        d->nreads++;
    }
    return 0;
}

int seg_def_set_rule(seg_def *d, const char *text, seg_rule_error *err)
{
    seg_rule *r = seg_rule_parse(text, err);
    if (!r)
        return -1;
    seg__def_clear_rule(d);
    d->r = r;
    d->rule = strdup(text);
    d->canonical = seg_rule_to_text(r);
    d->parsed = seg_rule_to_json(r);
    d->time_based = seg_rule_time_based(r);
    if (!d->rule || !d->canonical || !d->parsed || seg__def_reads(d) != 0) {
        memset(err, 0, sizeof(*err));
        strcpy(err->message, "out of memory");
        return -1;
    }
    return 0;
}

char *seg_def_to_json(const seg_def *d)
{
    json_t *reads = json_array();
    for (size_t i = 0; reads && i < d->nreads; i++)
        json_array_append_new(reads, json_string(d->reads[i]));
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:b,s:I,s:I,s:I}", "id", d->id, "name",
                          d->name ? d->name : "", "description",
                          d->description ? d->description : "", "rule", d->rule, "canonical",
                          d->canonical, "parsed", d->parsed, "reads", reads, "time_based",
                          d->time_based, "version", (json_int_t)d->version, "created",
                          (json_int_t)d->created_ms, "updated", (json_int_t)d->updated_ms);
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int seg_def_from_json(seg_def *d, const char *json, size_t len)
{
    memset(d, 0, sizeof(*d));
    json_t *o = json_loadb(json, len, 0, NULL);
    const char *id, *name, *desc, *rule, *canon, *parsed;
    json_t *reads;
    int tb;
    json_int_t ver, created, updated;
    if (!o || json_unpack(o, "{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:b,s:I,s:I,s:I}", "id", &id, "name",
                          &name, "description", &desc, "rule", &rule, "canonical", &canon,
                          "parsed", &parsed, "reads", &reads, "time_based", &tb, "version", &ver,
                          "created", &created, "updated", &updated) != 0 ||
        !json_is_array(reads)) {
        json_decref(o);
        return -1;
    }
    d->id = strdup(id);
    d->name = strdup(name);
    d->description = strdup(desc);
    d->rule = strdup(rule);
    d->canonical = strdup(canon);
    d->parsed = strdup(parsed);
    d->time_based = tb;
    d->version = ver;
    d->created_ms = created;
    d->updated_ms = updated;
    size_t n = json_array_size(reads);
    d->reads = calloc(n ? n : 1, sizeof(char *));
    int bad = !d->id || !d->name || !d->description || !d->rule || !d->canonical ||
              !d->parsed || !d->reads;
    for (size_t i = 0; !bad && i < n; i++) {
        const char *s = json_string_value(json_array_get(reads, i));
        if (!s || !(d->reads[i] = strdup(s)))
            bad = 1;
        else
            d->nreads++;
    }
    json_decref(o);
    if (bad) {
        seg_def_clear(d);
        return -1;
    }
    return 0;
}

int seg_def_load_rule(seg_def *d)
{
    seg_rule_error err;
    if (d->r)
        return 0;
    d->r = seg_rule_from_json(d->parsed, &err);
    return d->r ? 0 : -1;
}

int seg_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ snapshot */

/* One named dependency of one segment, sorted by (kind, name). */
typedef struct {
    int kind;
    const char *name;
    size_t seg;
} seg_ix;

struct seg_defs {
    int refs;
    int64_t version;
    seg_def *defs;
    size_t n;
    seg_ix *named;           /* trait, event, channel deps */
    size_t nnamed;
    size_t *revenue, nrevenue;      /* segments reading revenue */
    size_t *any_event, nany_event;  /* total_events / first_seen / last_seen */
};

static int seg__def_cmp(const void *a, const void *b)
{
    return strcmp(((const seg_def *)a)->id, ((const seg_def *)b)->id);
}

static int seg__ix_cmp(const void *a, const void *b)
{
    const seg_ix *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void seg__defs_free(seg_defs *s)
{
    for (size_t i = 0; i < s->n; i++)
        seg_def_clear(&s->defs[i]);
    free(s->defs);
    free(s->named);
    free(s->revenue);
    free(s->any_event);
    free(s);
}

/* Appends v to a list that can hold every segment. */
static void seg__push(size_t *list, size_t *n, size_t v)
{
    if (*n == 0 || list[*n - 1] != v)
        list[(*n)++] = v;
}

seg_defs *seg_defs_new(seg_def *defs, size_t n, int64_t version)
{
    seg_defs *s = calloc(1, sizeof(*s));
    if (!s) {
        for (size_t i = 0; i < n; i++)
            seg_def_clear(&defs[i]);
        free(defs);
        return NULL;
    }
    s->refs = 1;
    s->version = version;
    s->defs = defs;
    s->n = n;
    if (n)
        qsort(defs, n, sizeof(seg_def), seg__def_cmp);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const seg_dep *deps;
        total += seg_rule_deps(defs[i].r, &deps);
    }
    s->named = calloc(total ? total : 1, sizeof(seg_ix));
    s->revenue = calloc(n ? n : 1, sizeof(size_t));
    s->any_event = calloc(n ? n : 1, sizeof(size_t));
    if (!s->named || !s->revenue || !s->any_event) {
        seg__defs_free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const seg_dep *deps;
        size_t nd = seg_rule_deps(defs[i].r, &deps);
        for (size_t j = 0; j < nd; j++) {
            switch (deps[j].kind) {
            case SEG_DEP_TRAIT:
            case SEG_DEP_EVENT:
            case SEG_DEP_CHANNEL:
                s->named[s->nnamed++] = (seg_ix){ deps[j].kind, deps[j].name, i };
                break;
            case SEG_DEP_REVENUE:
                seg__push(s->revenue, &s->nrevenue, i);
                break;
            default:
                seg__push(s->any_event, &s->nany_event, i);
                break;
            }
        }
    }
    if (s->nnamed)
        qsort(s->named, s->nnamed, sizeof(seg_ix), seg__ix_cmp);
    return s;
}

seg_defs *seg_defs_ref(seg_defs *s)
{
    s->refs++;
    return s;
}

void seg_defs_unref(seg_defs *s)
{
    if (s && --s->refs == 0)
        seg__defs_free(s);
}

size_t seg_defs_count(const seg_defs *s) { return s->n; }
int64_t seg_defs_version(const seg_defs *s) { return s->version; }
const seg_def *seg_defs_at(const seg_defs *s, size_t i) { return &s->defs[i]; }

long seg_defs_find(const seg_defs *s, const char *id)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->defs[mid].id, id);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Marks every segment indexed under (kind, name). */
static size_t seg__mark_named(const seg_defs *s, int kind, const char *name, unsigned char *sel)
{
    seg_ix key = { kind, name, 0 };
    size_t lo = 0, hi = s->nnamed, marked = 0;
    while (lo < hi) { /* first entry >= key */
        size_t mid = lo + (hi - lo) / 2;
        if (seg__ix_cmp(&s->named[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < s->nnamed && seg__ix_cmp(&s->named[i], &key) == 0; i++)
        if (!sel[s->named[i].seg]) {
            sel[s->named[i].seg] = 1;
            marked++;
        }
    return marked;
}

static size_t seg__mark_list(const size_t *list, size_t n, unsigned char *sel)
{
    size_t marked = 0;
    for (size_t i = 0; i < n; i++)
        if (!sel[list[i]]) {
            sel[list[i]] = 1;
            marked++;
        }
    return marked;
}

size_t seg_defs_select(const seg_defs *s, const seg_touch *t, unsigned char *sel)
{
    size_t marked = 0;
    for (size_t i = 0; i < t->ntraits; i++)
        marked += seg__mark_named(s, SEG_DEP_TRAIT, t->traits[i], sel);
    for (size_t i = 0; i < t->nevents; i++)
        marked += seg__mark_named(s, SEG_DEP_EVENT, t->events[i], sel);
    for (size_t i = 0; i < t->nchannels; i++)
        marked += seg__mark_named(s, SEG_DEP_CHANNEL, t->channels[i], sel);
    if (t->revenue)
        marked += seg__mark_list(s->revenue, s->nrevenue, sel);
    if (t->nevents)
        marked += seg__mark_list(s->any_event, s->nany_event, sel);
    return marked;
}

size_t seg_defs_select_time_based(const seg_defs *s, unsigned char *sel)
{
    size_t marked = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->defs[i].time_based && !sel[i]) {
            sel[i] = 1;
            marked++;
        }
    return marked;
}
