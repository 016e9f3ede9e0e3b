/* cns_change: the change script runner (see cns_change.h). */
#include "cns_change.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arguments of the change script, and how many of them are formatted. */
enum { CNS_FIXED_ARGS = 10, CNS_ARGS_PER_CHANGE = 7, CNS_FIXED_BUFS = 4, CNS_BUFS_PER_CHANGE = 2 };

struct cns_change {
    cns_svc *cs;
    char *master;
    int hops;
    cns_change_opts o;
    char *message_id, *jurisdiction, *jurisdiction_actor, *action;
    size_t n;
    cns_entry *entries;
    char **json;                     /* entry JSON, one per entry */
    cns_change_cb cb;
    void *ud;
};

static void cns__change_free(cns_change *ch)
{
    for (size_t i = 0; ch->json && i < ch->n; i++)
        free(ch->json[i]);
    free(ch->json);
    free(ch->entries);
    free(ch->master);
    free(ch->message_id);
    free(ch->jurisdiction);
    free(ch->jurisdiction_actor);
    free(ch->action);
    free(ch);
}

static void cns__finish(cns_change *ch, cns_change_outcome out, grpc_status_code code,
                        const char *msg, long long changed, const redisReply *state)
{
    ch->cb(ch, out, code, msg, ch->master, changed, state, ch->ud);
    cns__change_free(ch);
}

static void cns__eval(cns_change *ch);

static void cns__reply(redisReply *reply, const char *err, void *ud)
{
    cns_change *ch = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code != GRPC_STATUS_OK) {
        cns__finish(ch, CNS_CHANGE_FAILED, code, msg, 0, NULL);
        return;
    }
    const redisReply *tag = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
                                ? reply->element[0]
                                : NULL;
    if (tag && cns_reply_is(tag, "ok") && reply->elements == 3 &&
        reply->element[1]->type == REDIS_REPLY_INTEGER &&
        reply->element[2]->type == REDIS_REPLY_ARRAY) {
        cns__finish(ch, CNS_CHANGE_OK, GRPC_STATUS_OK, "", reply->element[1]->integer,
                    reply->element[2]);
    } else if (tag && cns_reply_is(tag, "duplicate")) {
        cns__finish(ch, CNS_CHANGE_DUPLICATE, GRPC_STATUS_OK, "", 0, NULL);
    } else if (tag && cns_reply_is(tag, "notfound")) {
        snprintf(msg, sizeof msg, "profile not found: %s", ch->master);
        cns__finish(ch, CNS_CHANGE_NOT_FOUND, GRPC_STATUS_NOT_FOUND, msg, 0, NULL);
    } else if (tag && cns_reply_is(tag, "redirect") && reply->elements == 2 &&
               reply->element[1]->type == REDIS_REPLY_STRING) {
        char *into;
        if (cns_redirect(reply->element[1], &ch->hops, &into, msg, sizeof msg) != 0) {
            cns__finish(ch, CNS_CHANGE_FAILED, GRPC_STATUS_INTERNAL, msg, 0, NULL);
            return;
        }
        free(ch->master);
        ch->master = into;
        cns__eval(ch);
    } else {
        cns__finish(ch, CNS_CHANGE_FAILED, GRPC_STATUS_INTERNAL, "malformed change reply", 0,
                    NULL);
    }
}

static void cns__eval(cns_change *ch)
{
    cns_args a;
    if (cns_args_init(&a, ch->master, CNS_FIXED_ARGS + CNS_ARGS_PER_CHANGE * ch->n,
                      CNS_FIXED_BUFS + CNS_BUFS_PER_CHANGE * ch->n) != 0) {
        cns__finish(ch, CNS_CHANGE_FAILED, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0,
                    NULL);
        return;
    }
    int64_t now = cdp_now_ms();
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld", (long long)now);
    cns_args_push(&a, ch->action);
    cns_args_push(&a, ch->message_id);
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld",
             (long long)(now - ch->cs->cfg.dedup_window_s * 1000));
    cns_args_push(&a, ch->jurisdiction);
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld", (long long)ch->o.jurisdiction_ms);
    cns_args_push(&a, ch->jurisdiction_actor);
    cns_args_push(&a, ch->o.require_profile ? "1" : "0");
    snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%zu", ch->n);
    cns_args_push(&a, cns_policy_default_jurisdiction(&ch->cs->policy));
    for (size_t i = 0; i < ch->n; i++) {
        const cns_entry *e = &ch->entries[i];
        cns_entry_field(e->purpose, e->channel, cns_args_buf(&a), CNS_ARG_BUFSZ);
        cns_args_push(&a, e->purpose);
        cns_args_push(&a, e->channel);
        snprintf(cns_args_buf(&a), CNS_ARG_BUFSZ, "%lld", (long long)e->updated_ms);
        cns_args_push(&a, e->message_id);
        cns_args_push(&a, e->actor);
        cns_args_push(&a, ch->json[i]);
    }
    if (cns_args_eval(&a, &ch->cs->store, ch->cs->store.change, cns__reply, ch) != 0)
        cns__finish(ch, CNS_CHANGE_FAILED, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0,
                    NULL);
}

void cns_change_run(cns_svc *cs, const char *master, const cns_change_opts *o,
                    const cns_entry *entries, size_t n, cns_change_cb cb, void *ud)
{
    cns_change *ch = calloc(1, sizeof(*ch));
    if (!ch) {
        cb(NULL, CNS_CHANGE_FAILED, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", master, 0,
           NULL, ud);
        return;
    }
    ch->cs = cs;
    ch->o = *o;
    ch->cb = cb;
    ch->ud = ud;
    ch->n = n;
    ch->master = strdup(master);
    ch->action = strdup(o->action);
    ch->message_id = strdup(o->message_id ? o->message_id : "");
    ch->jurisdiction = strdup(o->jurisdiction ? o->jurisdiction : "");
    ch->jurisdiction_actor = strdup(o->jurisdiction_actor ? o->jurisdiction_actor : "");
    ch->entries = malloc((n ? n : 1) * sizeof(*ch->entries));
    ch->json = calloc(n ? n : 1, sizeof(*ch->json));
    int ok = ch->master && ch->action && ch->message_id && ch->jurisdiction &&
             ch->jurisdiction_actor && ch->entries && ch->json;
    for (size_t i = 0; ok && i < n; i++) {
        ch->entries[i] = entries[i];
        json_t *j = cns_entry_to_json(&entries[i]);
        ch->json[i] = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        ok = ch->json[i] != NULL;
    }
    if (!ok) {
        cns__finish(ch, CNS_CHANGE_FAILED, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0,
                    NULL);
        return;
    }
    cns__eval(ch);
}
