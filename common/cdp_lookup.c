/* cdp_lookup: see cdp_lookup.h. */
#include "cdp_lookup.h"

#include <stdio.h>
#include <stdlib.h>

#include "cdp/v1/identity.pb-c.h"

#define CDP_LOOKUP_MSG_BUFSZ 512

typedef struct {
    cdp_lookup_cb cb;
    void *ud;
} cdp__lookup;

static void cdp__lookup_done(grpc_status_code code, const char *details,
                             const ProtobufCMessage *msg, void *ud)
{
    cdp__lookup *l = ud;
    const Cdp__V1__LookupResponse *resp = (const Cdp__V1__LookupResponse *)msg;
    if (code == GRPC_STATUS_NOT_FOUND || (code == GRPC_STATUS_OK && !resp->master_id[0])) {
        l->cb(GRPC_STATUS_NOT_FOUND, NULL, "identifier not found", l->ud);
    } else if (code != GRPC_STATUS_OK) {
        char buf[CDP_LOOKUP_MSG_BUFSZ];
        snprintf(buf, sizeof buf, "identity lookup failed: %s", details ? details : "");
        l->cb(code == GRPC_STATUS_CANCELLED ? GRPC_STATUS_UNAVAILABLE : code, NULL, buf, l->ud);
    } else {
        l->cb(GRPC_STATUS_OK, resp->master_id, NULL, l->ud);
    }
    free(l);
}

void cdp_lookup(cdp_rpc_channel *identity, cdp_rpc_call *call, const Cdp__V1__Identifier *id,
                int64_t timeout_ms, cdp_lookup_cb cb, void *ud)
{
    cdp__lookup *l = malloc(sizeof *l);
    if (!l) {
        cb(GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory", ud);
        return;
    }
    l->cb = cb;
    l->ud = ud;
    Cdp__V1__LookupRequest lr = CDP__V1__LOOKUP_REQUEST__INIT;
    lr.identifier = (Cdp__V1__Identifier *)id;
    int64_t left = cdp_rpc_call_remaining_ms(call);
    int64_t deadline = left < timeout_ms ? left : timeout_ms;
    if (deadline < 1)
        deadline = 1;
    if (cdp_rpc_unary(identity, &cdp__v1__identity__descriptor, "Lookup", &lr.base,
                      (int)deadline, cdp__lookup_done, l) != 0) {
        free(l);
        cb(GRPC_STATUS_INTERNAL, NULL, "identity Lookup is not available", ud);
    }
}
