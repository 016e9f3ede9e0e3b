/* cns_store: keys, script registration and reply status (see cns_store.h). */
#include "cns_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cns_lua.h"
#include "cns_service.h"

static const char *const cns__key_fmt[CNS_KEY_COUNT] = {
    [CNS_KEY_CONSENT] = "cdp:cns:{p:%s}",
    [CNS_KEY_AUDIT] = "cdp:cns:{p:%s}:audit",
    [CNS_KEY_PROFILE] = "cdp:prf:{p:%s}",
    [CNS_KEY_SEEN] = "cdp:cns:{p:%s}:seen",
};

int cns_keys_init(cns_keys *k, const char *master)
{
    size_t total = 0, mlen = strlen(master);
    for (int i = 0; i < CNS_KEY_COUNT; i++)
        total += strlen(cns__key_fmt[i]) + mlen; /* "%s" leaves room for the NUL */
    char *buf = malloc(total);
    if (!buf)
        return -1;
    for (int i = 0; i < CNS_KEY_COUNT; i++) {
        size_t room = strlen(cns__key_fmt[i]) + mlen;
        int n = snprintf(buf, room, cns__key_fmt[i], master);
        k->v[i] = buf;
        k->len[i] = (size_t)n;
        buf += room;
    }
    return 0;
}

void cns_keys_free(cns_keys *k)
{
    free(k->v[0]);
    k->v[0] = NULL;
}

int cns_store_init(cns_store *s, cdp_redis *r)
{
    memset(s, 0, sizeof(*s));
    s->redis = r;
    s->change = cdp_redis_script_add(r, "consent_change", cns_lua_change);
    s->fold = cdp_redis_script_add(r, "consent_fold", cns_lua_fold);
    s->suppress = cdp_redis_script_add(r, "consent_suppress", cns_lua_suppress);
    s->list = cdp_redis_script_add(r, "consent_list", cns_lua_list);
    return (s->change && s->fold && s->suppress && s->list) ? 0 : -1;
}

/* "XADD <audit key> * at <ms>" before the record's own fields. */
enum { CNS_AUDIT_HEAD_ARGS = 5 };

int cns_audit_add(cns_store *s, const char *master, int64_t at_ms, const char *const *fields,
                  size_t nfields, cdp_redis_cb cb, void *ud)
{
    cns_keys k;
    if (nfields > CNS_AUDIT_FIELDS_MAX || cns_keys_init(&k, master) != 0)
        return -1;
    char at[CNS_ARG_BUFSZ];
    snprintf(at, sizeof at, "%lld", (long long)at_ms);
    const char *argv[CNS_AUDIT_HEAD_ARGS + CNS_AUDIT_FIELDS_MAX] = { "XADD", k.v[CNS_KEY_AUDIT],
                                                                     "*", "at", at };
    size_t lens[CNS_AUDIT_HEAD_ARGS + CNS_AUDIT_FIELDS_MAX];
    size_t argc = CNS_AUDIT_HEAD_ARGS + nfields;
    for (size_t i = 0; i < nfields; i++)
        argv[CNS_AUDIT_HEAD_ARGS + i] = fields[i];
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    cdp_redis_command(s->redis, k.v[CNS_KEY_AUDIT], k.len[CNS_KEY_AUDIT], cb, ud, (int)argc, argv,
                      lens);
    cns_keys_free(&k);
    return 0;
}

/* ------------------------------------------------------------------ script calls */

int cns_args_init(cns_args *a, const char *master, size_t nargs, size_t nbufs)
{
    memset(a, 0, sizeof(*a));
    a->cap = nargs;
    a->cap_bufs = nbufs;
    a->v = malloc((nargs ? nargs : 1) * sizeof(*a->v));
    a->bufs = malloc((nbufs ? nbufs : 1) * sizeof(*a->bufs));
    if (!a->v || !a->bufs || cns_keys_init(&a->keys, master) != 0) {
        free(a->v);
        free(a->bufs);
        return -1;
    }
    return 0;
}

void cns_args_push(cns_args *a, const char *s)
{
    if (a->n < a->cap)
        a->v[a->n++] = s;
}

char *cns_args_buf(cns_args *a)
{
    char *b = a->bufs[a->n_bufs < a->cap_bufs ? a->n_bufs++ : a->cap_bufs - 1];
    b[0] = '\0';
    cns_args_push(a, b);
    return b;
}

void cns_args_free(cns_args *a)
{
    cns_keys_free(&a->keys);
    free(a->v);
    free(a->bufs);
    a->v = NULL;
    a->bufs = NULL;
}

int cns_args_eval(cns_args *a, cns_store *s, cdp_redis_script *script, cdp_redis_cb cb, void *ud)
{
    size_t *lens = malloc((a->n ? a->n : 1) * sizeof(*lens));
    if (!lens) {
        cns_args_free(a);
        return -1;
    }
    for (size_t i = 0; i < a->n; i++)
        lens[i] = strlen(a->v[i]);
    cdp_redis_eval(s->redis, script, cb, ud, CNS_KEY_COUNT, (const char **)a->keys.v,
                   a->keys.len, (int)a->n, a->v, lens);
    free(lens);
    cns_args_free(a);
    return 0;
}

int cns_reply_is(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

int cns_redirect(const redisReply *survivor, int *hops, char **into, char *msg, size_t msglen)
{
    *into = strndup(survivor->str, survivor->len);
    if (*into && ++*hops <= CNS_MAX_REDIRECTS)
        return 0;
    snprintf(msg, msglen, *into ? "merged profile chain too long at %s" : "out of memory",
             *into);
    free(*into);
    *into = NULL;
    return -1;
}
