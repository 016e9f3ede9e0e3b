/* cns_fold: read the loser, fold into the survivor (see cns_fold.h). */
#include "cns_fold.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"
#include "cns_merge.h"

#define CNS_ACTOR_PREFIX "merge:"
/* Arguments of the fold script, and how many of them are formatted. */
enum {
    CNS_FOLD_FIXED_ARGS = 8,
    CNS_FOLD_ARGS_PER_ENTRY = 6,
    CNS_FOLD_FIXED_BUFS = 3,
    CNS_FOLD_BUFS_PER_ENTRY = 2,
};

typedef struct {
    cns_svc *cs;
    char *loser, *target, *message_id, *actor;
    int hops;
    cns_merge_state st;
    cns_fold_cb cb;
    void *ud;
} cns_fold;

static void cns__fold_finish(cns_fold *f, grpc_status_code code, const char *msg,
                             long long changed)
{
    f->cb(code, msg, f->target, changed, f->ud);
    cns_merge_state_free(&f->st);
    free(f->loser);
    free(f->target);
    free(f->message_id);
    free(f->actor);
    free(f);
}

/* The status of a reply; on failure the fold is finished and -1 returned. */
static int cns__fold_check(cns_fold *f, const redisReply *reply, const char *err)
{
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code == GRPC_STATUS_OK)
        return 0;
    cns__fold_finish(f, code, msg, 0);
    return -1;
}

static void cns__fold_eval(cns_fold *f);

static void cns__fold_reply(redisReply *reply, const char *err, void *ud)
{
    cns_fold *f = ud;
    if (cns__fold_check(f, reply, err) != 0)
        return;
    const redisReply *tag = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
                                ? reply->element[0]
                                : NULL;
    if (tag && cns_reply_is(tag, "ok") && reply->element[1]->type == REDIS_REPLY_INTEGER) {
        long long changed = reply->element[1]->integer;
        if (changed > 0)
            cdp_log(CDP_LOG_INFO, "consent folded", "{s:s,s:s,s:I}", "loser", f->loser,
                    "survivor", f->target, "changed", (json_int_t)changed);
        cns__fold_finish(f, GRPC_STATUS_OK, "", changed);
    } else if (tag && cns_reply_is(tag, "redirect") &&
               reply->element[1]->type == REDIS_REPLY_STRING) {
        char *into, msg[CNS_MSG_MAX];
        if (cns_redirect(reply->element[1], &f->hops, &into, msg, sizeof msg) != 0) {
            cns__fold_finish(f, GRPC_STATUS_INTERNAL, msg, 0);
            return;
        }
        free(f->target);
        f->target = into;
        cns__fold_eval(f);
    } else {
        cns__fold_finish(f, GRPC_STATUS_INTERNAL, "malformed fold reply", 0);
    }
}

static void cns__fold_eval(cns_fold *f)
{
    const cns_merge_state *st = &f->st;
    cns_args a;
    if (cns_args_init(&a, f->target, CNS_FOLD_FIXED_ARGS + CNS_FOLD_ARGS_PER_ENTRY * st->n,
                      CNS_FOLD_FIXED_BUFS + CNS_FOLD_BUFS_PER_ENTRY * st->n) != 0) {
        cns__fold_finish(f, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0);
        return;
    }
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld", (long long)cdp_now_ms());
    cns_args_push(&a, f->actor);
    cns_args_push(&a, f->message_id);
    cns_args_push(&a, cns_policy_default_jurisdiction(&f->cs->policy));
    cns_args_push(&a, st->jurisdiction);
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld", (long long)st->jurisdiction_ms);
    cns_args_push(&a, st->jurisdiction_mid);
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%zu", st->n);
    for (size_t i = 0; i < st->n; i++) {
        const cns_entry *e = &st->entries[i].e;
        cns_entry_field(e->purpose, e->channel, cns_args_buf(&a), CNS_ARG_BUFSZ);
        cns_args_push(&a, e->purpose);
        cns_args_push(&a, e->channel);
        snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld", (long long)e->updated_ms);
        cns_args_push(&a, e->message_id);
        cns_args_push(&a, st->entries[i].json);
    }
    if (cns_args_eval(&a, &f->cs->store, f->cs->store.fold, cns__fold_reply, f) != 0)
        cns__fold_finish(f, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0);
}

static void cns__loser_reply(redisReply *reply, const char *err, void *ud)
{
    cns_fold *f = ud;
    if (cns__fold_check(f, reply, err) != 0)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        cns__fold_finish(f, GRPC_STATUS_INTERNAL, "malformed consent hash reply", 0);
        return;
    }
    size_t n = reply->elements / 2;
    const char **names = malloc((n ? n : 1) * sizeof(*names));
    const char **vals = malloc((n ? n : 1) * sizeof(*vals));
    size_t *nlen = malloc((n ? n : 1) * sizeof(*nlen));
    size_t *vlen = malloc((n ? n : 1) * sizeof(*vlen));
    int ok = names && vals && nlen && vlen;
    for (size_t i = 0; ok && i < n; i++) {
        const redisReply *kr = reply->element[2 * i], *vr = reply->element[2 * i + 1];
        ok = kr->type == REDIS_REPLY_STRING && vr->type == REDIS_REPLY_STRING;
        if (ok) {
            names[i] = kr->str, nlen[i] = kr->len;
            vals[i] = vr->str, vlen[i] = vr->len;
        }
    }
    int parsed = ok ? cns_merge_parse(&f->st, n, names, nlen, vals, vlen) : -1;
    free(names), free(vals), free(nlen), free(vlen);
    if (!ok || parsed != 0) {
        cns__fold_finish(f, ok ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                         ok ? "out of memory" : "malformed consent hash reply", 0);
        return;
    }
    if (f->st.skipped)
        cdp_log(CDP_LOG_WARN, "malformed consent fields left out of a fold", "{s:s,s:I}",
                "loser", f->loser, "skipped", (json_int_t)f->st.skipped);
    if (f->st.n == 0 && !f->st.jurisdiction[0]) {
        cns__fold_finish(f, GRPC_STATUS_OK, "", 0); /* nothing to fold */
        return;
    }
    cns__fold_eval(f);
}

void cns_fold_run(cns_svc *cs, const char *loser, const char *survivor, const char *message_id,
                  cns_fold_cb cb, void *ud)
{
    cns_fold *f = calloc(1, sizeof(*f));
    if (!f) {
        cb(GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", survivor, 0, ud);
        return;
    }
    f->cs = cs;
    f->cb = cb;
    f->ud = ud;
    f->loser = strdup(loser);
    f->target = strdup(survivor);
    f->message_id = strdup(message_id ? message_id : "");
    size_t alen = strlen(CNS_ACTOR_PREFIX) + strlen(loser) + 1;
    f->actor = malloc(alen);
    cns_keys k;
    if (!f->loser || !f->target || !f->message_id || !f->actor || cns_keys_init(&k, loser) != 0) {
        cns__fold_finish(f, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0);
        return;
    }
    snprintf(f->actor, alen, CNS_ACTOR_PREFIX "%s", loser);
    const char *argv[] = { "HGETALL", k.v[CNS_KEY_CONSENT] };
    size_t lens[] = { strlen(argv[0]), k.len[CNS_KEY_CONSENT] };
    cdp_redis_command(cs->store.redis, k.v[CNS_KEY_CONSENT], k.len[CNS_KEY_CONSENT],
                      cns__loser_reply, f, 2, argv, lens);
    cns_keys_free(&k);
}
