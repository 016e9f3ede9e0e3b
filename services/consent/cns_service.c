/* cns_service: configuration, wiring and the helpers the handlers share
 * (see cns_service.h). */
#include "cns_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp_config.h"
#include "cdp_lookup.h"
#include "cdp_log.h"
#include "cdp_metrics.h"

#define CNS_METRIC_PREFIX "cdp_consent_"
#define CNS_METRIC_NAME_MAX 96

enum {
    CNS_DEFAULT_DEDUP_WINDOW_S = 30 * 24 * 3600,
    CNS_MIN_DEDUP_WINDOW_S = 60,
    CNS_MAX_DEDUP_WINDOW_S = 365 * 24 * 3600,
    CNS_DEFAULT_MAX_FUTURE_S = 24 * 3600,
    CNS_MAX_MAX_FUTURE_S = 365 * 24 * 3600,
    CNS_DEFAULT_LOOKUP_TIMEOUT_MS = 2000,
    CNS_MAX_LOOKUP_TIMEOUT_MS = 60000,
};

/* ------------------------------------------------------------------ configuration */

static int cns__config_read(cns_svc *cs)
{
    cns_config *c = &cs->cfg;
    if (cdp_env_int("CDP_CONSENT_DEDUP_WINDOW_S", CNS_DEFAULT_DEDUP_WINDOW_S,
                    CNS_MIN_DEDUP_WINDOW_S, CNS_MAX_DEDUP_WINDOW_S, &c->dedup_window_s) ||
        cdp_env_int("CDP_CONSENT_MAX_FUTURE_S", CNS_DEFAULT_MAX_FUTURE_S, 0, CNS_MAX_MAX_FUTURE_S,
                    &c->max_future_s) ||
        cdp_env_int("CDP_CONSENT_LOOKUP_TIMEOUT_MS", CNS_DEFAULT_LOOKUP_TIMEOUT_MS, 1,
                    CNS_MAX_LOOKUP_TIMEOUT_MS, &c->lookup_timeout_ms))
        return -1;
    c->identity_addr = cdp_env_str("CDP_IDENTITY_ADDR", "127.0.0.1:50052");
    char err[CNS_ERR_MAX];
    if (cns_policy_parse(&cs->policy, cdp_env_str(CNS_ENV_PURPOSES, NULL),
                         cdp_env_str(CNS_ENV_CHANNELS, NULL),
                         cdp_env_str(CNS_ENV_DEFAULT_JURISDICTION, NULL),
                         cdp_env_str(CNS_ENV_POLICY, NULL), err, sizeof err) != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid consent policy", "{s:s}", "error", err);
        fprintf(stderr, "cdp-consent: %s\n", err);
        return -1;
    }
    int rc = cdp_ident_config_from_env(&cs->ident);
    if (rc != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid identifier configuration", "{s:s}", "variable",
                rc == -1 ? CDP_IDENT_ENV_REGION : CDP_IDENT_ENV_BLOCKED);
        return -1;
    }
    return 0;
}

static void cns__metrics_help(void)
{
    cdp_metrics_help("cdp_consent_checks_total", "Consent checks by result and deciding rule.");
    cdp_metrics_help("cdp_consent_changes_total",
                     "Consent entries and jurisdictions changed, by action (set, event, merge).");
    cdp_metrics_help("cdp_consent_suppressions_total",
                     "Suppression list changes, by action (suppress, unsuppress).");
    cdp_metrics_help("cdp_consent_denials_recorded_total",
                     "Denials at send time written to an audit trail.");
    cdp_metrics_help("cdp_consent_events_total",
                     "Consent events by outcome (applied, duplicate, invalid).");
    cdp_metrics_help("cdp_consent_merges_total",
                     "Merges folded into their survivor, by outcome (folded: something changed, "
                     "unchanged: a re-run or nothing to fold, invalid).");
}

void cns_count(const char *name, const char *labels, double v)
{
    char full[CNS_METRIC_NAME_MAX];
    snprintf(full, sizeof full, CNS_METRIC_PREFIX "%s", name);
    cdp_metrics_inc(full, labels, v);
}

int cns_service_init(cdp_service *svc)
{
    cns_svc *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return -1;
    cs->svc = svc;
    svc->state = cs;
    if (cns__config_read(cs) != 0)
        return -1;
    if (cns_store_init(&cs->store, svc->redis) != 0) {
        cdp_log(CDP_LOG_ERROR, "cannot register consent scripts", NULL);
        return -1;
    }
    cs->identity = cdp_rpc_channel_new(svc->loop, cs->cfg.identity_addr, NULL);
    if (!cs->identity) {
        cdp_log(CDP_LOG_ERROR, "cannot open identity channel", "{s:s}", "target",
                cs->cfg.identity_addr);
        return -1;
    }
    static const cdp_rpc_binding bindings[] = {
        { "SetConsent", cns_set_consent, 0 },
        { "GetConsent", cns_get_consent, 0 },
        { "CheckConsent", cns_check_consent, 0 },
        { "CheckConsentBatch", cns_check_consent_batch, 0 },
        { "Suppress", cns_suppress, 0 },
        { "Unsuppress", cns_unsuppress, 0 },
        { "ListSuppressions", cns_list_suppressions, 0 },
        { "GetAudit", cns_get_audit, 0 },
        { "ApplyConsentEvents", cns_apply_consent_events, 0 },
        { "GetPolicy", cns_get_policy, 0 },
    };
    if (cdp_rpc_server_add_service(svc->server, &cdp__v1__consent__descriptor, bindings,
                                   sizeof(bindings) / sizeof(bindings[0]), cs) != 0)
        return -1;
    cns__metrics_help();
    cdp_log(CDP_LOG_INFO, "consent configured", "{s:i,s:i,s:s,s:s}", "purposes",
            (int)cs->policy.n_purposes, "channels", (int)cs->policy.n_channels,
            "default_jurisdiction", cns_policy_default_jurisdiction(&cs->policy), "identity",
            cs->cfg.identity_addr);
    return 0;
}

void cns_service_destroy(cdp_service *svc)
{
    cns_svc *cs = svc->state;
    if (!cs)
        return;
    if (cs->identity)
        cdp_rpc_channel_close(cs->identity);
    free(cs);
    svc->state = NULL;
}

/* ------------------------------------------------------------------ shared helpers */

int cns_ident_key(const cns_svc *cs, const char *type, const char *value, char *key,
                  size_t keylen, const char **why)
{
    char norm[CDP_IDENT_VALUE_BUFSZ];
    if (cdp_ident_kind_of(type) == CDP_IDENT_INVALID) {
        *why = type && type[0] ? "not a valid identifier type" : "required";
        return -1;
    }
    if (cdp_ident_normalize(type, value, &cs->ident, norm, sizeof norm, why) != CDP_IDENT_OK)
        return -1;
    int n = snprintf(key, keylen, "%s:%s", type, norm);
    if (n < 0 || (size_t)n >= keylen) {
        *why = "too long";
        return -1;
    }
    return 0;
}

int cns_check_target(const cns_svc *cs, const char *master_id, const Cdp__V1__Identifier *id,
                     const char *prefix, char *key, size_t keylen, char *msg, size_t msglen)
{
    int by_id = master_id && master_id[0], by_ident = id != NULL;
    key[0] = '\0';
    if (by_id == by_ident) {
        snprintf(msg, msglen, "%smaster_id, %sidentifier: exactly one is required", prefix, prefix);
        return -1;
    }
    if (by_id) {
        if (strlen(master_id) > CNS_ID_MAX) {
            snprintf(msg, msglen, "%smaster_id: at most %d bytes", prefix, CNS_ID_MAX);
            return -1;
        }
        return 0;
    }
    const char *why = NULL;
    if (cdp_ident_kind_of(id->type) == CDP_IDENT_INVALID) {
        snprintf(msg, msglen, "%sidentifier.type: %s", prefix,
                 id->type && id->type[0] ? "not a valid identifier type" : "required");
        return -1;
    }
    if (cns_ident_key(cs, id->type, id->value, key, keylen, &why) != 0) {
        snprintf(msg, msglen, "%sidentifier.value: %s", prefix, why ? why : "not valid");
        return -1;
    }
    return 0;
}

void cns_lookup(cns_svc *cs, cdp_rpc_call *call, const Cdp__V1__Identifier *id, cns_lookup_cb cb,
                void *ud)
{
    cdp_lookup(cs->identity, call, id, cs->cfg.lookup_timeout_ms, cb, ud);
}

typedef struct {
    cdp_rpc_call *call;
    char asked[CNS_MSG_MAX];
    cns_resolved_fn fn;
    void (*drop)(void *ud);
    void *ud;
} cns__resolve;

static void cns__resolve_done(grpc_status_code code, const char *master, const char *details,
                              void *ud)
{
    cns__resolve *t = ud;
    if (code == GRPC_STATUS_OK) {
        t->fn(t->ud, master);
    } else {
        if (code == GRPC_STATUS_NOT_FOUND)
            cdp_rpc_fail(t->call, GRPC_STATUS_NOT_FOUND, "profile not found: %s", t->asked);
        else
            cdp_rpc_fail(t->call, code, "%s", details);
        t->drop(t->ud);
    }
    free(t);
}

void cns_resolve(cns_svc *cs, cdp_rpc_call *call, const char *master_id,
                 const Cdp__V1__Identifier *id, cns_resolved_fn fn, void (*drop)(void *ud),
                 void *ud)
{
    if (!id) {
        fn(ud, master_id);
        return;
    }
    cns__resolve *t = calloc(1, sizeof(*t));
    if (!t) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        drop(ud);
        return;
    }
    *t = (cns__resolve){ .call = call, .fn = fn, .drop = drop, .ud = ud };
    snprintf(t->asked, sizeof t->asked, "%s:%s", id->type, id->value);
    cns_lookup(cs, call, id, cns__resolve_done, t);
}

int cns_page_size(int32_t page_size, size_t *out, char *msg, size_t msglen)
{
    if (page_size < 0 || page_size > CNS_MAX_PAGE) {
        snprintf(msg, msglen, "page_size: must be between 0 and %d, got %d", CNS_MAX_PAGE,
                 (int)page_size);
        return -1;
    }
    *out = page_size ? (size_t)page_size : CNS_DEFAULT_PAGE;
    return 0;
}
