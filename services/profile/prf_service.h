/* prf_service: the Profile gRPC service (proto/cdp/v1/profile.proto) on the
 * shared runtime. prf_service.c reads the configuration and wires the
 * handlers; prf_apply.c runs ApplyEvents, prf_get.c GetProfile.
 *
 * Configuration (docs/profile.md):
 *   CDP_PROFILE_TIMELINE_LENGTH          timeline entries kept      100
 *   CDP_PROFILE_DEDUP_WINDOW_S           seen message ids kept for  604800
 *   CDP_PROFILE_TIMELINE_DEFAULT_LIMIT   GetProfile timeline_limit 0 20
 *   CDP_PROFILE_LOOKUP_TIMEOUT_MS        identity Lookup deadline   2000
 *   CDP_PROFILE_DAILY_RETENTION_DAYS     daily buckets kept (0 all) 400
 *   CDP_IDENTITY_ADDR                    identity service           127.0.0.1:50052 */
#ifndef PRF_SERVICE_H
#define PRF_SERVICE_H

#include <stdint.h>
#include "cdp_rpc.h"
#include "cdp_service.h"
#include "prf_fold.h"
#include "prf_store.h"

/* Limits of the API, not configuration. */
enum {
    PRF_MAX_BATCH_EVENTS = 10000,   /* events in one ApplyEvents call */
    PRF_MAX_TIMELINE_LIMIT = 1000,  /* GetProfile timeline_limit */
    PRF_MAX_REDIRECTS = 16,         /* tombstones followed before giving up */
    PRF_ERR_MAX = 512,              /* status message buffer */
};

typedef struct {
    int64_t timeline_len;
    int64_t dedup_window_s;
    int64_t timeline_default_limit;
    int64_t lookup_timeout_ms;
    int64_t daily_retention_days;
    const char *identity_addr;
} prf_config;

typedef struct {
    cdp_service *svc;
    prf_store store;
    cdp_rpc_channel *identity;
    prf_config cfg;
} prf_svc;

/* Reads the configuration above from the environment. Returns 0, or -1
 * after logging the bad variable. */
int prf_config_read(prf_config *c);

/* The fold options for an apply happening at now_ms. */
prf_fold_opts prf_svc_fold_opts(const prf_svc *ps, int64_t now_ms);

/* cdp_service_def hooks. */
int prf_service_init(cdp_service *svc);
void prf_service_destroy(cdp_service *svc);

/* Handlers; ud is the prf_svc. */
void prf_apply_events(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void prf_get_profile(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);

#endif
