/* prf_get: the GetProfile handler.
 *
 * By master id: the structures of the profile are read in one pipelined
 * burst (one round trip); a tombstone's main hash names its survivor,
 * which is read instead. By identifier: identity's Lookup gives the master
 * id first. The reads are plain commands rather than a script: measured,
 * a read script cost Redis several times the CPU of the same reads sent
 * as commands (docs/profile.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_lookup.h"
#include "prf_codec.h"
#include "prf_event.h"
#include "prf_service.h"
#include "prf_view.h"

typedef struct prf_get prf_get;

/* One structure's read: its reply comes back with this as ud. */
typedef struct {
    prf_get *g;
    int key;
} prf_get_slot;

struct prf_get {
    prf_svc *ps;
    cdp_rpc_call *call;
    char *master;            /* the id being read now */
    char *asked;             /* what the client asked for, for NOT_FOUND */
    size_t limit;
    int hops;
    prf_profile p;           /* what the replies said so far */
    int exists;              /* the main hash had fields */
    int pending;             /* replies still to come */
    grpc_status_code code;
    char msg[PRF_ERR_MAX];
    prf_get_slot slots[PRF_KEY_COUNT];
};

static void prf__get_free(prf_get *g)
{
    prf_profile_clear(&g->p);
    free(g->master);
    free(g->asked);
    free(g);
}

static void prf__read(prf_get *g);

/* All replies are in: answer, or follow a tombstone to its survivor. */
static void prf__read_complete(prf_get *g)
{
    if (g->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(g->call, g->code, "%s", g->msg);
    } else if (g->p.merged_into) {
        char *into = strdup(g->p.merged_into);
        if (into && ++g->hops <= PRF_MAX_REDIRECTS) {
            free(g->master);
            g->master = into;
            prf__read(g);
            return;
        }
        if (into)
            cdp_rpc_fail(g->call, GRPC_STATUS_INTERNAL, "merged profile chain too long at %s",
                         into);
        else
            cdp_rpc_fail(g->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        free(into);
    } else if (!g->exists) {
        cdp_rpc_fail(g->call, GRPC_STATUS_NOT_FOUND, "profile not found: %s", g->asked);
    } else {
        Cdp__V1__ProfileView *v = prf_view_build(&g->p, g->master, g->limit);
        if (v)
            cdp_rpc_reply(g->call, &v->base);
        else
            cdp_rpc_fail(g->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf_view_free(v);
    }
    prf__get_free(g);
}

static void prf__read_reply(redisReply *reply, const char *err, void *ud)
{
    prf_get_slot *slot = ud;
    prf_get *g = slot->g;
    char msg[PRF_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code == GRPC_STATUS_OK && prf_profile_load(&g->p, slot->key, reply) != 0) {
        code = GRPC_STATUS_INTERNAL;
        snprintf(msg, sizeof(msg), "malformed profile reply for %s", g->master);
    }
    if (code != GRPC_STATUS_OK && g->code == GRPC_STATUS_OK) {
        g->code = code;
        snprintf(g->msg, sizeof(g->msg), "%s", msg);
    }
    if (code == GRPC_STATUS_OK && slot->key == PRF_KEY_MAIN)
        g->exists = reply->elements > 0;
    if (--g->pending == 0)
        prf__read_complete(g);
}

/* Reads g->master in one pipelined burst: the newest `limit` timeline
 * entries, no trait stamps, no seen record. */
static void prf__read(prf_get *g)
{
    void *ud[PRF_KEY_COUNT];
    prf_profile_clear(&g->p);
    g->exists = 0;
    for (int k = 0; k < PRF_KEY_COUNT; k++) {
        g->slots[k] = (prf_get_slot){ g, k };
        ud[k] = &g->slots[k];
    }
    /* held at 1 while issuing, so replies failing at once cannot finish it */
    g->pending = 1;
    int n = prf_store_read_view(&g->ps->store, g->master, g->limit, prf__read_reply, ud);
    if (n < 0) {
        g->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(g->msg, sizeof(g->msg), "out of memory");
        n = 0;
    }
    g->pending += n;
    if (--g->pending == 0)
        prf__read_complete(g);
}

static void prf__lookup_done(grpc_status_code code, const char *master, const char *details,
                             void *ud)
{
    prf_get *g = ud;
    if (code == GRPC_STATUS_NOT_FOUND) {
        cdp_rpc_fail(g->call, GRPC_STATUS_NOT_FOUND, "profile not found: %s", g->asked);
    } else if (code != GRPC_STATUS_OK) {
        cdp_rpc_fail(g->call, code, "%s", details);
    } else if (!(g->master = strdup(master))) {
        cdp_rpc_fail(g->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        prf__read(g);
        return;
    }
    prf__get_free(g);
}

/* Checks the request; on failure answers the call and returns -1. */
static int prf__validate(cdp_rpc_call *call, const Cdp__V1__GetProfileRequest *req)
{
    int by_id = req->master_id[0] != '\0', by_ident = req->identifier != NULL;
    if (by_id == by_ident) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "master_id, identifier: exactly one is required");
        return -1;
    }
    if (by_id && strlen(req->master_id) > PRF_ID_MAX_BYTES) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "master_id: at most %d bytes",
                     PRF_ID_MAX_BYTES);
        return -1;
    }
    if (by_ident && (!req->identifier->type[0] || !req->identifier->value[0])) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "identifier.%s: required",
                     req->identifier->type[0] ? "value" : "type");
        return -1;
    }
    if (req->timeline_limit < 0 || req->timeline_limit > PRF_MAX_TIMELINE_LIMIT) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "timeline_limit: must be between 0 and %d, got %" PRId32,
                     PRF_MAX_TIMELINE_LIMIT, req->timeline_limit);
        return -1;
    }
    return 0;
}

/* "type:value" for messages about an identifier. */
static char *prf__ident_str(const Cdp__V1__Identifier *id)
{
    size_t n = strlen(id->type) + strlen(id->value) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s:%s", id->type, id->value);
    return s;
}

void prf_get_profile(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetProfileRequest *req = (const Cdp__V1__GetProfileRequest *)msg;
    if (prf__validate(call, req) != 0)
        return;
    prf_get *g = calloc(1, sizeof(*g));
    if (!g) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    g->ps = ud;
    g->call = call;
    prf_profile_init(&g->p);
    g->limit = req->timeline_limit > 0 ? (size_t)req->timeline_limit
                                       : (size_t)g->ps->cfg.timeline_default_limit;
    int by_id = req->master_id[0] != '\0';
    g->asked = by_id ? strdup(req->master_id) : prf__ident_str(req->identifier);
    g->master = by_id ? strdup(req->master_id) : NULL;
    if (!g->asked || (by_id && !g->master)) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf__get_free(g);
        return;
    }
    if (by_id) {
        prf__read(g);
        return;
    }
    cdp_lookup(g->ps->identity, call, req->identifier, g->ps->cfg.lookup_timeout_ms,
               prf__lookup_done, g);
}
