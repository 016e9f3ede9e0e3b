/* seg_load: decoding profile hashes, membership states and pending
 * transitions (seg_load.h). */
#include "seg_load.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

enum { SEG_NUM_MAX = 40, SEG_NAME_BUF = 1024 };


static int seg__parse_double(const char *s, size_t len, double *out)
{
    char buf[SEG_NUM_MAX];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int seg__flat(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

/* A NUL-terminated copy of a field suffix (names may hold any byte but
 * NUL; longer names than the buffer are skipped). */
static int seg__name(const char *s, size_t len, char *buf, size_t buflen)
{
    if (len >= buflen || memchr(s, '\0', len))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

static int seg__is(const redisReply *f, const char *name)
{
    size_t n = strlen(name);
    return f->len == n && memcmp(f->str, name, n) == 0;
}

int seg_profile_load_main(seg_profile *p, const redisReply *r, char **merged_into, int *exists)
{
    *merged_into = NULL;
    *exists = 0;
    if (!seg__flat(r))
        return -1;
    *exists = r->elements > 0;
    int64_t first = 0, last = 0, v;
    char name[SEG_NAME_BUF];
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *val = r->element[i + 1];
        if (f->len > 2 && f->str[1] == ':') {
            if (seg__name(f->str + 2, f->len - 2, name, sizeof(name)) != 0)
                continue;
            if (f->str[0] == 't') {
                seg_profile_set_trait_json(p, name, val->str, val->len);
            } else if (f->str[0] == 'n') {
                if (cdp_parse_i64(val->str, val->len, &v) == 0)
                    seg_profile_set_count(p, name, v);
            } else if (f->str[0] == 'c') {
                const char *colon = memchr(val->str, ':', val->len);
                if (colon && cdp_parse_i64(val->str, (size_t)(colon - val->str), &v) == 0)
                    seg_profile_set_channel(p, name, v);
            }
        } else if (seg__is(f, "total")) {
            if (cdp_parse_i64(val->str, val->len, &v) == 0)
                seg_profile_set_total_events(p, v);
        } else if (seg__is(f, "revenue")) {
            double d;
            if (seg__parse_double(val->str, val->len, &d) == 0)
                seg_profile_set_revenue(p, d);
        } else if (seg__is(f, "first_seen")) {
            if (cdp_parse_i64(val->str, val->len, &v) == 0)
                first = v;
        } else if (seg__is(f, "last_seen")) {
            if (cdp_parse_i64(val->str, val->len, &v) == 0)
                last = v;
        } else if (seg__is(f, "merged_into") && val->len) {
            if (!(*merged_into = strndup(val->str, val->len)))
                return -1;
        }
    }
    seg_profile_set_seen(p, first, last);
    return 0;
}

int seg_profile_load_daily(seg_profile *p, const redisReply *r)
{
    if (!seg__flat(r))
        return -1;
    char name[SEG_NAME_BUF];
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *val = r->element[i + 1];
        int64_t day, v;
        if (f->len > 2 && f->str[0] == 'n' && f->str[1] == ':') {
            const char *colon = memchr(f->str + 2, ':', f->len - 2);
            if (!colon || cdp_parse_i64(f->str + 2, (size_t)(colon - f->str - 2), &day) != 0)
                continue;
            size_t off = (size_t)(colon + 1 - f->str);
            if (seg__name(f->str + off, f->len - off, name, sizeof(name)) == 0 &&
                cdp_parse_i64(val->str, val->len, &v) == 0)
                seg_profile_add_day_count(p, name, day, v);
        } else if (f->len > 2 && f->str[0] == 'r' && f->str[1] == ':') {
            double d;
            if (cdp_parse_i64(f->str + 2, f->len - 2, &day) == 0 &&
                seg__parse_double(val->str, val->len, &d) == 0)
                seg_profile_add_day_revenue(p, day, d);
        }
    }
    return 0;
}

int seg_mem_parse(const char *s, size_t len, seg_mem_state *out)
{
    int64_t v[5];
    size_t start = 0, k = 0;
    for (size_t i = 0; i <= len && k < 5; i++) {
        if (i == len || s[i] == ':') {
            if (cdp_parse_i64(s + start, i - start, &v[k++]) != 0)
                return -1;
            start = i + 1;
        }
    }
    if (k != 5 || start != len + 1 || (v[0] != 0 && v[0] != 1))
        return -1;
    *out = (seg_mem_state){ (int)v[0], v[1], v[2], v[3], v[4] };
    return 0;
}

void seg_change_clear(seg_change *c)
{
    free(c->cid);
    free(c->seg);
    free(c->m);
    free(c->kind);
    free(c->ev);
    free(c->mid);
    memset(c, 0, sizeof(*c));
}

/* A JSON field that Lua's cjson wrote as a string or a number. */
static int seg__json_i64(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        *out = (int64_t)json_real_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    return s ? cdp_parse_i64(s, strlen(s), out) : -1;
}

int seg_change_parse(const char *cid, size_t cidlen, const char *json, size_t len,
                     seg_change *out)
{
    memset(out, 0, sizeof(*out));
    json_t *o = json_loadb(json, len, 0, NULL);
    const char *seg, *m, *kind, *ev, *mid;
    json_t *n, *at;
    if (!o || json_unpack(o, "{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "seg", &seg, "m", &m, "k", &kind,
                          "ev", &ev, "mid", &mid, "n", &n, "at", &at) != 0 ||
        seg__json_i64(n, &out->n) != 0 || seg__json_i64(at, &out->at_ms) != 0) {
        json_decref(o);
        return -1;
    }
    json_t *created = json_object_get(o, "c");
    if (created && seg__json_i64(created, &out->created_ms) != 0)
        out->created_ms = 0;
    out->cid = strndup(cid, cidlen);
    out->seg = strdup(seg);
    out->m = strdup(m);
    out->kind = strdup(kind);
    out->ev = strdup(ev);
    out->mid = strdup(mid);
    json_decref(o);
    if (!out->cid || !out->seg || !out->m || !out->kind || !out->ev || !out->mid) {
        seg_change_clear(out);
        return -1;
    }
    return 0;
}

int seg_bf_status_load(seg_bf_status *b, const redisReply *r)
{
    memset(b, 0, sizeof(*b));
    if (!seg__flat(r))
        return -1;
    b->present = r->elements > 0;
    static const struct {
        const char *name;
        size_t off;
    } nums[] = {
        { "version", offsetof(seg_bf_status, version) },
        { "scanned", offsetof(seg_bf_status, scanned) },
        { "total", offsetof(seg_bf_status, total) },
        { "matched", offsetof(seg_bf_status, matched) },
        { "started", offsetof(seg_bf_status, started_ms) },
        { "finished", offsetof(seg_bf_status, finished_ms) },
        { "shard", offsetof(seg_bf_status, shard) },
    };
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        int done = 0;
        for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]) && !done; k++)
            if (seg__is(f, nums[k].name)) {
                cdp_parse_i64(v->str, v->len, (int64_t *)((char *)b + nums[k].off));
                done = 1;
            }
        if (done)
            continue;
        if (seg__is(f, "state"))
            snprintf(b->state, sizeof(b->state), "%.*s", (int)v->len, v->str);
        else if (seg__is(f, "cursor"))
            snprintf(b->cursor, sizeof(b->cursor), "%.*s", (int)v->len, v->str);
        else if (seg__is(f, "error"))
            snprintf(b->error, sizeof(b->error), "%.*s", (int)v->len, v->str);
    }
    return 0;
}
