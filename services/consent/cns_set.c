/* cns_set: SetConsent and ApplyConsentEvents. Both turn their input into
 * entries (cns_entry) and run the change script (cns_change.h) once per
 * profile change: the entries, their audit records and, for events, the
 * message id's seen record are one atomic script. ApplyConsentEvents also
 * folds the consent of every merged-away profile the events' merges name
 * into its survivor (cns_fold.h), side by side with the events: both keep
 * the greatest stamp per entry, so their order does not matter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp/v1/profile.pb-c.h"
#include "cns_change.h"
#include "cns_event.h"
#include "cns_fold.h"
#include "cns_service.h"

#define CNS_DEFAULT_RPC_SOURCE "api"
#define CNS_MS_PER_S 1000
#define CNS_EVENTS_COUNTER "events_total"
#define CNS_MERGES_COUNTER "merges_total"
#define CNS_NUM_KEY_PREFIX 8 /* "<len>:" of a merge pair key, and its NUL */

/* ------------------------------------------------------------------ SetConsent */

typedef struct {
    cns_svc *cs;
    cdp_rpc_call *call;
    char asked[CNS_MSG_MAX];   /* what the client named, for NOT_FOUND */
    char jurisdiction[CNS_NAME_BUFSZ];
    char actor[CNS_ACTOR_MAX + 1];
    int64_t now;
    size_t n;
    cns_entry *entries;
} cns_set;

static void cns__set_free(void *ud)
{
    cns_set *s = ud;
    free(s->entries);
    free(s);
}

/* One entry of the request into e; -1 with msg naming the field. */
static int cns__set_entry(const cns_svc *cs, const Cdp__V1__ConsentEntry *pb, size_t i,
                          const cns_set *s, cns_entry *e, char *msg, size_t msglen)
{
    memset(e, 0, sizeof(*e));
    const char *channel = pb->channel[0] ? pb->channel : CNS_ALL_CHANNELS;
    const char *field = NULL, *why = NULL;
    if (!pb->purpose[0])
        field = "purpose", why = "required";
    else if (cns_policy_purpose(&cs->policy, pb->purpose) < 0)
        field = "purpose", why = "unknown purpose";
    else if (!cns_policy_channel_ok(&cs->policy, channel))
        field = "channel", why = "unknown channel";
    else if ((unsigned)pb->status > CNS_STATUS_REVOKED)
        field = "status", why = "not a ConsentStatus";
    else if (!cns_legal_basis_ok(pb->legal_basis))
        field = "legal_basis", why = "must be consent, contract, legal_obligation, "
                                     "vital_interests, public_task or legitimate_interests";
    else if (pb->jurisdiction[0] && cns_policy_jurisdiction(&cs->policy, pb->jurisdiction) < 0)
        field = "jurisdiction", why = "unknown jurisdiction";
    else if (cns_copy(e->source, sizeof e->source,
                      pb->source[0] ? pb->source : CNS_DEFAULT_RPC_SOURCE) != 0)
        field = "source", why = "too long (at most 128 bytes)";
    if (field) {
        snprintf(msg, msglen, "entries[%zu].%s: %s", i, field, why);
        return -1;
    }
    e->updated_ms = s->now;
    if (pb->updated_at) {
        e->updated_ms = cns_ts_ms(pb->updated_at);
        if (e->updated_ms < 0) {
            snprintf(msg, msglen, "entries[%zu].updated_at: out of range", i);
            return -1;
        }
        if (e->updated_ms - s->now > cs->cfg.max_future_s * CNS_MS_PER_S) {
            snprintf(msg, msglen, "entries[%zu].updated_at: more than %llds in the future", i,
                     (long long)cs->cfg.max_future_s);
            return -1;
        }
    }
    cns_copy(e->purpose, sizeof e->purpose, pb->purpose);
    cns_copy(e->channel, sizeof e->channel, channel);
    cns_copy(e->legal_basis, sizeof e->legal_basis, pb->legal_basis);
    cns_copy(e->jurisdiction, sizeof e->jurisdiction, pb->jurisdiction);
    cns_copy(e->actor, sizeof e->actor, s->actor);
    e->status = (cns_status)pb->status;
    return 0;
}

static int cns__set_validate(const cns_svc *cs, const Cdp__V1__SetConsentRequest *r, cns_set *s,
                             char *msg, size_t msglen)
{
    char key[CNS_MSG_MAX];
    if (cns_check_target(cs, r->master_id, r->identifier, "", key, sizeof key, msg, msglen) != 0)
        return -1;
    if (!r->actor[0] || cns_copy(s->actor, sizeof s->actor, r->actor) != 0) {
        snprintf(msg, msglen, "actor: %s", r->actor[0] ? "at most 256 bytes" : "required");
        return -1;
    }
    if (r->jurisdiction[0] && cns_policy_jurisdiction(&cs->policy, r->jurisdiction) < 0) {
        snprintf(msg, msglen, "jurisdiction: unknown jurisdiction \"%.32s\"", r->jurisdiction);
        return -1;
    }
    cns_copy(s->jurisdiction, sizeof s->jurisdiction, r->jurisdiction);
    if (r->n_entries == 0 && !r->jurisdiction[0]) {
        snprintf(msg, msglen, "entries: at least one entry (or a jurisdiction) is required");
        return -1;
    }
    if (r->n_entries > CNS_MAX_SET_ENTRIES) {
        snprintf(msg, msglen, "entries: at most %d, got %zu", CNS_MAX_SET_ENTRIES, r->n_entries);
        return -1;
    }
    s->entries = malloc((r->n_entries ? r->n_entries : 1) * sizeof(*s->entries));
    if (!s->entries) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->n_entries; i++) {
        if (cns__set_entry(cs, r->entries[i], i, s, &s->entries[i], msg, msglen) != 0)
            return -1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(s->entries[k].purpose, s->entries[i].purpose) == 0 &&
                strcmp(s->entries[k].channel, s->entries[i].channel) == 0) {
                snprintf(msg, msglen, "entries[%zu]: %s/%s already given in entries[%zu]", i,
                         s->entries[i].purpose, s->entries[i].channel, k);
                return -1;
            }
    }
    s->n = r->n_entries;
    if (r->identifier)
        snprintf(s->asked, sizeof s->asked, "%s:%s", r->identifier->type, r->identifier->value);
    else
        snprintf(s->asked, sizeof s->asked, "%s", r->master_id);
    return 0;
}

static void cns__set_done(cns_change *ch, cns_change_outcome out, grpc_status_code code,
                          const char *msg, const char *master, long long changed,
                          const redisReply *state, void *ud)
{
    (void)ch;
    cns_set *s = ud;
    if (out == CNS_CHANGE_OK) {
        cns_count("changes_total", "action=\"set\"", (double)changed);
        cns_state_reply(s->call, s->cs, master, state);
    } else if (out == CNS_CHANGE_NOT_FOUND) {
        cdp_rpc_fail(s->call, GRPC_STATUS_NOT_FOUND, "profile not found: %s", s->asked);
    } else {
        cdp_rpc_fail(s->call, code, "%s", msg);
    }
    cns__set_free(s);
}

static void cns__set_start(void *ud, const char *master)
{
    cns_set *s = ud;
    cns_change_opts o = {
        .action = "set",
        .message_id = "",
        .jurisdiction = s->jurisdiction,
        .jurisdiction_ms = s->now,
        .jurisdiction_actor = s->actor,
        .require_profile = 1,
    };
    cns_change_run(s->cs, master, &o, s->entries, s->n, cns__set_done, s);
}

void cns_set_consent(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__SetConsentRequest *req = (const Cdp__V1__SetConsentRequest *)msg;
    cns_svc *cs = ud;
    cns_set *s = calloc(1, sizeof(*s));
    if (!s) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    s->cs = cs;
    s->call = call;
    s->now = cdp_now_ms();
    char err[CNS_MSG_MAX];
    if (cns__set_validate(cs, req, s, err, sizeof err) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        cns__set_free(s);
        return;
    }
    cns_resolve(cs, call, req->master_id, req->identifier, cns__set_start, cns__set_free, s);
}

/* ------------------------------------------------------------------ ApplyConsentEvents */

typedef struct {
    cns_svc *cs;
    cdp_rpc_call *call;
    size_t pending;
    int applied, duplicates;
    char **errors;
    size_t n_errors;
    grpc_status_code code;
    char msg[CNS_MSG_MAX];
} cns_apply;

static void cns__apply_release(cns_apply *a)
{
    if (--a->pending > 0)
        return;
    if (a->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(a->call, a->code, "%s", a->msg);
    } else {
        Cdp__V1__ApplyConsentEventsResponse resp = CDP__V1__APPLY_CONSENT_EVENTS_RESPONSE__INIT;
        resp.applied = a->applied;
        resp.duplicates = a->duplicates;
        resp.n_errors = a->n_errors;
        resp.errors = a->errors;
        cdp_rpc_reply(a->call, &resp.base);
    }
    for (size_t i = 0; i < a->n_errors; i++)
        free(a->errors[i]);
    free(a->errors);
    free(a);
}

static void cns__apply_done(cns_change *ch, cns_change_outcome out, grpc_status_code code,
                            const char *msg, const char *master, long long changed,
                            const redisReply *state, void *ud)
{
    (void)ch, (void)master, (void)state;
    cns_apply *a = ud;
    if (out == CNS_CHANGE_OK) {
        a->applied++;
        cns_count("events_total", "outcome=\"applied\"", 1);
        cns_count("changes_total", "action=\"event\"", (double)changed);
    } else if (out == CNS_CHANGE_DUPLICATE) {
        a->duplicates++;
        cns_count("events_total", "outcome=\"duplicate\"", 1);
    } else if (a->code == GRPC_STATUS_OK) {
        a->code = code;
        snprintf(a->msg, sizeof a->msg, "%s", msg);
    }
    cns__apply_release(a);
}

/* Appends "events[i] (<message id>): <field>: <why>" to the reply and
 * counts it as invalid under `counter`; -1 when out of memory. */
static int cns__apply_error(cns_apply *a, size_t i, const char *mid, const char *field,
                            const char *why, const char *counter)
{
    char line[CNS_MSG_MAX];
    snprintf(line, sizeof line, "events[%zu] (%.128s): %s: %s", i, mid ? mid : "", field, why);
    char **e = realloc(a->errors, (a->n_errors + 1) * sizeof(*e));
    if (!e)
        return -1;
    a->errors = e;
    if (!(a->errors[a->n_errors] = strdup(line)))
        return -1;
    a->n_errors++;
    cns_count(counter, "outcome=\"invalid\"", 1);
    return 0;
}

/* Starts the change of one resolved event, or records why it cannot be
 * applied. Returns -1 only when out of memory. */
static int cns__apply_one(cns_apply *a, const Cdp__V1__ResolvedEvent *re, size_t i,
                          cns_entry *scratch)
{
    cns_svc *cs = a->cs;
    const Cdp__V1__Event *ev = re->event;
    char field[CNS_FIELD_MAX], err[CNS_EVENT_ERR_MAX], why[CNS_EVENT_ERR_MAX];
    size_t n = 0;
    int rc = cns_event_parse(ev, scratch, CNS_EVENT_MAX_CHANGES, &n, &cs->policy, field,
                             sizeof field, err, sizeof err);
    if (rc == 0)
        return 0; /* not a consent event: counted nowhere */
    if (rc < 0)
        return cns__apply_error(a, i, ev->message_id, field, err, CNS_EVENTS_COUNTER);
    if (!re->master_id[0] || strlen(re->master_id) > CNS_ID_MAX)
        return cns__apply_error(a, i, ev->message_id, "master_id",
                                re->master_id[0] ? "at most 1024 bytes" : "required",
                                CNS_EVENTS_COUNTER);
    if (scratch[0].updated_ms - cdp_now_ms() > cs->cfg.max_future_s * CNS_MS_PER_S) {
        snprintf(why, sizeof why, "more than %llds in the future", (long long)cs->cfg.max_future_s);
        return cns__apply_error(a, i, ev->message_id, ev->timestamp ? "timestamp" : "received_at",
                                why, CNS_EVENTS_COUNTER);
    }
    const cns_entry *jur = NULL; /* the last change naming a jurisdiction sets the profile's */
    for (size_t k = 0; k < n; k++)
        if (scratch[k].jurisdiction[0])
            jur = &scratch[k];
    cns_change_opts o = {
        .action = "event",
        .message_id = ev->message_id,
        .jurisdiction = jur ? jur->jurisdiction : "",
        .jurisdiction_ms = scratch[0].updated_ms,
        .jurisdiction_actor = jur ? jur->actor : "",
        .require_profile = 0,
    };
    a->pending++;
    cns_change_run(cs, re->master_id, &o, scratch, n, cns__apply_done, a);
    return 0;
}

/* ------------------------------------------------------------------ merges */

static void cns__fold_done(grpc_status_code code, const char *msg, const char *survivor,
                           long long changed, void *ud)
{
    (void)survivor;
    cns_apply *a = ud;
    if (code == GRPC_STATUS_OK) {
        cns_count(CNS_MERGES_COUNTER,
                  changed > 0 ? "outcome=\"folded\"" : "outcome=\"unchanged\"", 1);
        cns_count("changes_total", "action=\"merge\"", (double)changed);
    } else if (a->code == GRPC_STATUS_OK) {
        a->code = code;
        snprintf(a->msg, sizeof a->msg, "%s", msg);
    }
    cns__apply_release(a);
}

/* Why a merge cannot be folded (NULL when it can); *field names the field. */
static const char *cns__merge_invalid(const Cdp__V1__Merge *m, const char **field)
{
    const char *ids[] = { m->loser_id, m->survivor_id };
    const char *names[] = { "loser_id", "survivor_id" };
    for (size_t k = 0; k < 2; k++) {
        *field = names[k];
        if (!ids[k][0])
            return "required";
        if (strlen(ids[k]) > CNS_ID_MAX)
            return "at most 1024 bytes";
    }
    return strcmp(m->loser_id, m->survivor_id) == 0 ? "same as loser_id" : NULL;
}

/* Starts the fold of every distinct (loser, survivor) pair that the
 * events' merges carry, whichever master each event resolved to: a
 * merge's survivor may itself have been merged into the event's master
 * later, and the fold follows it there. `pairs` (a JSON object used as a
 * set) drops repeats. Returns -1 only when out of memory. */
static int cns__apply_merges(cns_apply *a, const Cdp__V1__ResolvedEvent *re, size_t i,
                             json_t *pairs)
{
    const char *mid = re->event ? re->event->message_id : "";
    for (size_t j = 0; j < re->n_merges; j++) {
        const Cdp__V1__Merge *m = re->merges[j];
        const char *name = NULL, *why = cns__merge_invalid(m, &name);
        if (why) {
            char field[CNS_FIELD_MAX];
            snprintf(field, sizeof field, "merges[%zu].%s", j, name);
            if (cns__apply_error(a, i, mid, field, why, CNS_MERGES_COUNTER) != 0)
                return -1;
            continue;
        }
        /* "<len(loser)>:<loser><survivor>": one key per pair, unambiguous */
        size_t klen = 2 * CNS_ID_MAX + CNS_NUM_KEY_PREFIX;
        char *key = malloc(klen);
        if (!key)
            return -1;
        snprintf(key, klen, "%zu:%s%s", strlen(m->loser_id), m->loser_id, m->survivor_id);
        int seen = json_object_get(pairs, key) != NULL;
        int rc = seen ? 0 : json_object_set_new(pairs, key, json_true());
        free(key);
        if (rc != 0)
            return -1;
        if (seen)
            continue;
        a->pending++;
        cns_fold_run(a->cs, m->loser_id, m->survivor_id, m->message_id, cns__fold_done, a);
    }
    return 0;
}

void cns_apply_consent_events(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ApplyEventsRequest *req = (const Cdp__V1__ApplyEventsRequest *)msg;
    if (req->n_events > CNS_MAX_APPLY_EVENTS) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d, got %zu",
                     CNS_MAX_APPLY_EVENTS, req->n_events);
        return;
    }
    cns_apply *a = calloc(1, sizeof(*a));
    cns_entry *scratch = malloc(CNS_EVENT_MAX_CHANGES * sizeof(*scratch));
    if (!a || !scratch) {
        free(a);
        free(scratch);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    a->cs = ud;
    a->call = call;
    a->pending = 1; /* held while starting */
    json_t *pairs = json_object();
    if (!pairs) {
        a->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(a->msg, sizeof a->msg, "out of memory");
    }
    for (size_t i = 0; pairs && i < req->n_events; i++) {
        const Cdp__V1__ResolvedEvent *re = req->events[i];
        if (cns__apply_merges(a, re, i, pairs) != 0 ||
            (re->event && cns__apply_one(a, re, i, scratch) != 0)) {
            if (a->code == GRPC_STATUS_OK) {
                a->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
                snprintf(a->msg, sizeof a->msg, "out of memory");
            }
            break;
        }
    }
    json_decref(pairs);
    free(scratch);
    cns__apply_release(a);
}
