/* prf_service: configuration and wiring of the Profile service (see
 * prf_service.h). */
#include "prf_service.h"

#include <stdlib.h>
#include <jansson.h>

#include "cdp_config.h"
#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp/v1/profile.pb-c.h"

#define PRF_MS_PER_S 1000

enum {
    PRF_DEFAULT_TIMELINE_LEN = 100,
    PRF_MAX_TIMELINE_LEN = 10000,
    PRF_DEFAULT_DEDUP_WINDOW_S = 7 * 24 * 3600,
    PRF_MIN_DEDUP_WINDOW_S = 60,
    PRF_MAX_DEDUP_WINDOW_S = 365 * 24 * 3600,
    PRF_DEFAULT_VIEW_TIMELINE = 20,
    PRF_DEFAULT_LOOKUP_TIMEOUT_MS = 2000,
    PRF_MAX_LOOKUP_TIMEOUT_MS = 60000,
    PRF_DEFAULT_DAILY_RETENTION_DAYS = 400,
    PRF_MAX_DAILY_RETENTION_DAYS = 100 * 366,
};

int prf_config_read(prf_config *c)
{
    if (cdp_env_int("CDP_PROFILE_TIMELINE_LENGTH", PRF_DEFAULT_TIMELINE_LEN, 1,
                    PRF_MAX_TIMELINE_LEN, &c->timeline_len) ||
        cdp_env_int("CDP_PROFILE_DEDUP_WINDOW_S", PRF_DEFAULT_DEDUP_WINDOW_S,
                    PRF_MIN_DEDUP_WINDOW_S, PRF_MAX_DEDUP_WINDOW_S, &c->dedup_window_s) ||
        cdp_env_int("CDP_PROFILE_TIMELINE_DEFAULT_LIMIT", PRF_DEFAULT_VIEW_TIMELINE, 1,
                    PRF_MAX_TIMELINE_LIMIT, &c->timeline_default_limit) ||
        cdp_env_int("CDP_PROFILE_LOOKUP_TIMEOUT_MS", PRF_DEFAULT_LOOKUP_TIMEOUT_MS, 1,
                    PRF_MAX_LOOKUP_TIMEOUT_MS, &c->lookup_timeout_ms) ||
        cdp_env_int("CDP_PROFILE_DAILY_RETENTION_DAYS", PRF_DEFAULT_DAILY_RETENTION_DAYS, 0,
                    PRF_MAX_DAILY_RETENTION_DAYS, &c->daily_retention_days))
        return -1;
    c->identity_addr = cdp_env_str("CDP_IDENTITY_ADDR", "127.0.0.1:50052");
    return 0;
}

prf_fold_opts prf_svc_fold_opts(const prf_svc *ps, int64_t now_ms)
{
    prf_fold_opts o = {
        .timeline_len = (size_t)ps->cfg.timeline_len,
        .now_ms = now_ms,
        .seen_cutoff_ms = now_ms - ps->cfg.dedup_window_s * PRF_MS_PER_S,
        .daily_retention_days = ps->cfg.daily_retention_days,
    };
    return o;
}

static void prf__metrics_help(void)
{
    cdp_metrics_help("cdp_profile_events_applied_total", "Events folded into a profile.");
    cdp_metrics_help("cdp_profile_events_duplicate_total",
                     "Events skipped because their message id was already applied.");
    cdp_metrics_help("cdp_profile_merges_folded_total",
                     "Merged-away profiles folded into their survivor.");
}

int prf_service_init(cdp_service *svc)
{
    prf_svc *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return -1;
    ps->svc = svc;
    svc->state = ps;
    if (prf_config_read(&ps->cfg) != 0)
        return -1;
    if (prf_store_init(&ps->store, svc->redis) != 0) {
        cdp_log(CDP_LOG_ERROR, "cannot register profile scripts", NULL);
        return -1;
    }
    ps->identity = cdp_rpc_channel_new(svc->loop, ps->cfg.identity_addr, NULL);
    if (!ps->identity) {
        cdp_log(CDP_LOG_ERROR, "cannot open identity channel", "{s:s}", "target",
                ps->cfg.identity_addr);
        return -1;
    }
    static const cdp_rpc_binding bindings[] = {
        { "ApplyEvents", prf_apply_events, 0 },
        { "GetProfile", prf_get_profile, 0 },
    };
    if (cdp_rpc_server_add_service(svc->server, &cdp__v1__profile__descriptor, bindings,
                                   sizeof(bindings) / sizeof(bindings[0]), ps) != 0)
        return -1;
    prf__metrics_help();
    cdp_log(CDP_LOG_INFO, "profile configured", "{s:I,s:I,s:I,s:s}", "timeline_length",
            (json_int_t)ps->cfg.timeline_len, "dedup_window_s", (json_int_t)ps->cfg.dedup_window_s,
            "daily_retention_days", (json_int_t)ps->cfg.daily_retention_days, "identity",
            ps->cfg.identity_addr);
    return 0;
}

void prf_service_destroy(cdp_service *svc)
{
    prf_svc *ps = svc->state;
    if (!ps)
        return;
    cdp_rpc_channel_close(ps->identity);
    free(ps);
    svc->state = NULL;
}
