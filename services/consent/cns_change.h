/* cns_change: runs the change script (cns_lua.h "change") for one profile:
 * builds its arguments from entries, follows a merged-away profile to its
 * survivor, and hands the outcome to the caller. Shared by SetConsent and
 * ApplyConsentEvents (cns_set.c). */
#ifndef CNS_CHANGE_H
#define CNS_CHANGE_H

#include <stdint.h>
#include <grpc/status.h>
#include <hiredis/hiredis.h>

#include "cns_entry.h"
#include "cns_service.h"

typedef enum {
    CNS_CHANGE_OK,        /* applied (changed says how many writes won) */
    CNS_CHANGE_DUPLICATE, /* the message id was applied before */
    CNS_CHANGE_NOT_FOUND, /* require_profile and the profile does not exist */
    CNS_CHANGE_FAILED,    /* code and msg say why */
} cns_change_outcome;

typedef struct cns_change cns_change;

/* Called once. On CNS_CHANGE_OK, state is the consent hash after the change
 * (HGETALL reply, owned by the client, valid during the call) and master the
 * profile written (the survivor when the asked one was merged away). */
typedef void (*cns_change_cb)(cns_change *ch, cns_change_outcome out, grpc_status_code code,
                              const char *msg, const char *master, long long changed,
                              const redisReply *state, void *ud);

typedef struct {
    const char *action;       /* "set" | "event" (audit action) */
    const char *message_id;   /* "" for RPC sets */
    const char *jurisdiction; /* "" for none */
    int64_t jurisdiction_ms;  /* its stamp's time */
    const char *jurisdiction_actor;
    int require_profile;
} cns_change_opts;

/* Runs the change of n entries (copied) on master. cb is called exactly
 * once, possibly before this returns (out of memory). */
void cns_change_run(cns_svc *cs, const char *master, const cns_change_opts *o,
                    const cns_entry *entries, size_t n, cns_change_cb cb, void *ud);

#endif
