/* cns_change: the change script runner (see cns_change.h). */
#include "cns_change.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CNS_NUM_BUFSZ 24
#define CNS_FIELD_BUFSZ (2 * CNS_NAME_BUFSZ + 4)
enum { CNS_FIXED_ARGS = 10, CNS_ARGS_PER_CHANGE = 7 };

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

static int cns__is(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static void cns__reply(redisReply *reply, const char *err, void *ud)
{
    cns_change *ch = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cns_store_status(reply, err, msg, sizeof msg);
    if (code != GRPC_STATUS_OK) {
        cns__finish(ch, CNS_CHANGE_FAILED, code, msg, 0, NULL);
        return;
    }
    const redisReply *tag = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
                                ? reply->element[0]
                                : NULL;
    if (tag && cns__is(tag, "ok") && reply->elements == 3 &&
        reply->element[1]->type == REDIS_REPLY_INTEGER &&
        reply->element[2]->type == REDIS_REPLY_ARRAY) {
        cns__finish(ch, CNS_CHANGE_OK, GRPC_STATUS_OK, "", reply->element[1]->integer,
                    reply->element[2]);
    } else if (tag && cns__is(tag, "duplicate")) {
        cns__finish(ch, CNS_CHANGE_DUPLICATE, GRPC_STATUS_OK, "", 0, NULL);
    } else if (tag && cns__is(tag, "notfound")) {
        snprintf(msg, sizeof msg, "profile not found: %s", ch->master);
        cns__finish(ch, CNS_CHANGE_NOT_FOUND, GRPC_STATUS_NOT_FOUND, msg, 0, NULL);
    } else if (tag && cns__is(tag, "redirect") && reply->elements == 2 &&
               reply->element[1]->type == REDIS_REPLY_STRING) {
        char *into = strndup(reply->element[1]->str, reply->element[1]->len);
        if (!into || ++ch->hops > CNS_MAX_REDIRECTS) {
            snprintf(msg, sizeof msg, into ? "merged profile chain too long at %s" : "out of memory",
                     into);
            free(into);
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
    size_t nargs = CNS_FIXED_ARGS + CNS_ARGS_PER_CHANGE * ch->n;
    const char **argv = malloc(nargs * sizeof(*argv));
    size_t *lens = malloc(nargs * sizeof(*lens));
    char (*nums)[CNS_NUM_BUFSZ] = malloc((ch->n + 3) * sizeof(*nums));
    char (*fields)[CNS_FIELD_BUFSZ] = malloc((ch->n ? ch->n : 1) * sizeof(*fields));
    cns_keys k;
    int keys_ok = cns_keys_init(&k, ch->master) == 0;
    if (!argv || !lens || !nums || !fields || !keys_ok) {
        free(argv), free(lens), free(nums), free(fields);
        if (keys_ok)
            cns_keys_free(&k);
        cns__finish(ch, CNS_CHANGE_FAILED, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", 0,
                    NULL);
        return;
    }
    int64_t now = cdp_now_ms();
    snprintf(nums[0], CNS_NUM_BUFSZ, "%lld", (long long)now);
    snprintf(nums[1], CNS_NUM_BUFSZ, "%lld",
             (long long)(now - ch->cs->cfg.dedup_window_s * 1000));
    snprintf(nums[2], CNS_NUM_BUFSZ, "%lld", (long long)ch->o.jurisdiction_ms);
    char count[CNS_NUM_BUFSZ];
    snprintf(count, sizeof count, "%zu", ch->n);
    size_t a = 0;
    argv[a++] = nums[0];
    argv[a++] = ch->action;
    argv[a++] = ch->message_id;
    argv[a++] = nums[1];
    argv[a++] = ch->jurisdiction;
    argv[a++] = nums[2];
    argv[a++] = ch->jurisdiction_actor;
    argv[a++] = ch->o.require_profile ? "1" : "0";
    argv[a++] = count;
    argv[a++] = cns_policy_default_jurisdiction(&ch->cs->policy);
    for (size_t i = 0; i < ch->n; i++) {
        const cns_entry *e = &ch->entries[i];
        cns_entry_field(e->purpose, e->channel, fields[i], sizeof fields[i]);
        snprintf(nums[i + 3], CNS_NUM_BUFSZ, "%lld", (long long)e->updated_ms);
        argv[a++] = fields[i];
        argv[a++] = e->purpose;
        argv[a++] = e->channel;
        argv[a++] = nums[i + 3];
        argv[a++] = e->message_id;
        argv[a++] = e->actor;
        argv[a++] = ch->json[i];
    }
    for (size_t i = 0; i < nargs; i++)
        lens[i] = strlen(argv[i]);
    cdp_redis_eval(ch->cs->store.redis, ch->cs->store.change, cns__reply, ch, CNS_KEY_COUNT,
                   (const char **)k.v, k.len, (int)nargs, argv, lens);
    cns_keys_free(&k);
    free(argv), free(lens), free(nums), free(fields);
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
