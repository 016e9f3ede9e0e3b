/* cns_service: the Consent gRPC service (proto/cdp/v1/consent.proto) on the
 * shared runtime. cns_service.c reads the configuration, wires the handlers
 * and holds what several handlers share (resolving the profile a request
 * names, Redis statuses); cns_check.c answers CheckConsent(Batch),
 * cns_set.c SetConsent and ApplyConsentEvents (which folds the consent of
 * merged-away profiles through cns_fold.c), cns_read.c GetConsent, GetAudit
 * and GetPolicy, cns_suppress.c the suppression list.
 *
 * Configuration (docs/consent.md):
 *   CDP_CONSENT_PURPOSES, CDP_CONSENT_CHANNELS, CDP_CONSENT_DEFAULT_JURISDICTION,
 *   CDP_CONSENT_POLICY                   the policy (cns_policy.h)
 *   CDP_CONSENT_DEDUP_WINDOW_S           seen message ids kept for   2592000
 *   CDP_CONSENT_MAX_FUTURE_S             latest accepted entry time  86400
 *   CDP_CONSENT_LOOKUP_TIMEOUT_MS        identity Lookup deadline    2000
 *   CDP_IDENTITY_ADDR                    identity service            127.0.0.1:50052
 *   CDP_IDENTITY_DEFAULT_REGION, CDP_IDENTITY_BLOCKED_VALUES (identifier
 *   normalization, shared with identity: common/cdp_ident.h) */
#ifndef CNS_SERVICE_H
#define CNS_SERVICE_H

#include <stdint.h>

#include "cdp/v1/consent.pb-c.h"
#include "cdp_ident.h"
#include "cdp_lookup.h"
#include "cdp_rpc.h"
#include "cdp_service.h"
#include "cns_policy.h"
#include "cns_store.h"

/* Limits of the API, not configuration. */
enum {
    CNS_MAX_CHECKS = 1000,         /* CheckConsentBatch checks */
    CNS_MAX_SET_ENTRIES = 100,     /* SetConsent entries */
    CNS_MAX_APPLY_EVENTS = 10000,  /* ApplyConsentEvents events */
    CNS_MAX_PAGE = 1000,           /* page_size of the listings */
    CNS_DEFAULT_PAGE = 100,
    CNS_MAX_REDIRECTS = 16,        /* merged profiles followed */
    CNS_ID_MAX = 1024,             /* master id bytes */
    CNS_TEXT_MAX = 1024,           /* reason, context bytes */
    CNS_MSG_MAX = 512,             /* status message buffer */
};

typedef struct {
    int64_t dedup_window_s;
    int64_t max_future_s;
    int64_t lookup_timeout_ms;
    const char *identity_addr;
} cns_config;

typedef struct {
    cdp_service *svc;
    cns_store store;
    cdp_rpc_channel *identity;
    cns_config cfg;
    cns_policy policy;
    cdp_ident_config ident;
} cns_svc;

/* cdp_service_def hooks. */
int cns_service_init(cdp_service *svc);
void cns_service_destroy(cdp_service *svc);

/* Handlers; ud is the cns_svc. */
void cns_check_consent(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_check_consent_batch(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_set_consent(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_apply_consent_events(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_get_consent(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_get_audit(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_get_policy(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_suppress(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_unsuppress(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void cns_list_suppressions(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);

/* ------------------------------------------------------------------ shared by handlers */

/* Checks a (master_id, identifier) pair: exactly one, the master id at most
 * CNS_ID_MAX bytes, the identifier's type valid and its value normalizable.
 * When an identifier is given, key gets "<type>:<normalized value>" (the
 * suppression key), else "". prefix ("" or "checks[3].") starts the field
 * names. Returns 0, or -1 with msg set to "<field>: <reason>". */
int cns_check_target(const cns_svc *cs, const char *master_id, const Cdp__V1__Identifier *id,
                     const char *prefix, char *key, size_t keylen, char *msg, size_t msglen);

/* Normalizes an identifier into "<type>:<value>"; -1 (why set) when the
 * type is invalid or the value cannot be normalized. */
int cns_ident_key(const cns_svc *cs, const char *type, const char *value, char *key,
                  size_t keylen, const char **why);

/* The master id an identifier belongs to, asked from identity's Lookup
 * (common/cdp_lookup.h on the service's identity channel). cb gets code OK
 * and the master id, or NOT_FOUND (identity does not know it; master NULL),
 * or another code with details (UNAVAILABLE when identity cannot be
 * reached). The deadline is the smaller of the call's remaining time and
 * CDP_CONSENT_LOOKUP_TIMEOUT_MS. cb may be called before this returns. */
typedef cdp_lookup_cb cns_lookup_cb;
void cns_lookup(cns_svc *cs, cdp_rpc_call *call, const Cdp__V1__Identifier *id, cns_lookup_cb cb,
                void *ud);

/* The profile a request names, once cns_check_target accepted it: master_id
 * as given (fn runs at once), or the master id identity's Lookup gives for
 * id. Then fn(ud, master); or the call is answered and drop(ud) called:
 * NOT_FOUND "profile not found: <type>:<value>" when identity does not know
 * id, the lookup's failure otherwise. */
typedef void (*cns_resolved_fn)(void *ud, const char *master);
void cns_resolve(cns_svc *cs, cdp_rpc_call *call, const char *master_id,
                 const Cdp__V1__Identifier *id, cns_resolved_fn fn, void (*drop)(void *ud),
                 void *ud);

/* Answers call with the ConsentState of master from the HGETALL reply of
 * its consent hash (entries sorted by purpose, then channel; the
 * configured default jurisdiction when none is stored). */
void cns_state_reply(cdp_rpc_call *call, const cns_svc *cs, const char *master,
                     const redisReply *hgetall);

/* Validates page_size (0: the default) into *out; -1 with msg set. */
int cns_page_size(int32_t page_size, size_t *out, char *msg, size_t msglen);

/* Counts a metric of the service (counter name without prefix, labels in
 * Prometheus form or ""). */
void cns_count(const char *name, const char *labels, double v);

#endif
