/* idn_service: the cdp.v1.Identity RPC handlers (Resolve, ResolveBatch,
 * Lookup, GetIdentities) over idn_store, plus the service's configuration.
 *
 * Configuration (docs/identity.md):
 *   CDP_IDENTITY_DEFAULT_REGION   phone region for national numbers (US)
 *   CDP_IDENTITY_BLOCKED_VALUES   comma-separated blocked values
 *   CDP_IDENTITY_PRIORITY         identifier type priority, highest first
 *   CDP_IDENTITY_LIMITS           per-type value limits, "user_id=1,email=5"
 *   CDP_IDENTITY_MERGE_RECORD_TTL_S  per-message merge records (604800)
 *   CDP_IDENTITY_MAX_ROUNDS       resolution restarts before ABORTED (8) */
#ifndef IDN_SERVICE_H
#define IDN_SERVICE_H

#include "cdp_ident.h"
#include "cdp_rpc.h"
#include "cdp_redis.h"
#include "idn_rules.h"
#include "idn_store.h"

/* Most requests in one ResolveBatch call. */
#define IDN_MAX_BATCH 1000

typedef struct {
    cdp_ident_config ident;
    idn_rules rules;
    idn_store_opts store_opts;
} idn_config;

/* Reads the configuration from the environment. Returns 0, or -1 after
 * logging the variable, its value and why it is invalid. */
int idn_config_from_env(idn_config *c);

typedef struct {
    idn_config cfg;
    cdp_redis *redis;
    idn_store *store;
} idn_service;

/* Initializes svc over redis (before cdp_redis_start: registers scripts)
 * and binds cdp.v1.Identity on server. Returns 0 or -1 (logged). */
int idn_service_init(idn_service *svc, const idn_config *cfg, cdp_redis *redis,
                     cdp_rpc_server *server);
void idn_service_close(idn_service *svc);

#endif
