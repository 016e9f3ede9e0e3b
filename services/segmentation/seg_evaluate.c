/* seg_evaluate: the Evaluate handler. Each touched profile goes through the
 * membership path (seg_eval.h) with the segments its touch can affect (all
 * of them for a merge survivor or a profile never seen); each merged-away
 * id ends all its memberships and leaves the registry. The answer is OK
 * only when every profile's transitions are recorded, indexed and on the
 * change stream; otherwise the first error, so the pipeline retries the
 * batch (a replay records nothing twice). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp/v1/segmentation.pb-c.h"
#include "seg_eval.h"

typedef struct {
    cdp_rpc_call *call;
    seg_touch *touches;
    char **ev_json;
    size_t ntouch;
    int pending;
    Cdp__V1__EvaluateResponse resp;
    grpc_status_code code;
    char msg[SEG_ERR_MAX];
} seg_batch;

static void seg__batch_free(seg_batch *b)
{
    for (size_t i = 0; i < b->ntouch; i++)
        free(b->ev_json[i]);
    free(b->ev_json);
    free(b->touches);
    free(b);
}

static void seg__batch_one_done(const seg_eval_result *r, void *ud)
{
    seg_batch *b = ud;
    if (r->code != GRPC_STATUS_OK && b->code == GRPC_STATUS_OK) {
        b->code = r->code;
        snprintf(b->msg, sizeof(b->msg), "%s", r->msg);
    }
    b->resp.evaluations += r->evaluations;
    b->resp.entered += r->entered;
    b->resp.exited += r->exited;
    if (--b->pending > 0)
        return;
    if (b->code != GRPC_STATUS_OK)
        cdp_rpc_fail(b->call, b->code, "%s", b->msg);
    else
        cdp_rpc_reply(b->call, &b->resp.base);
    seg__batch_free(b);
}

static int seg__check_master(cdp_rpc_call *call, const char *field, size_t i, const char *m)
{
    if (!m[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "profiles[%zu].%s: required", i, field);
        return -1;
    }
    if (strlen(m) > SEG_MASTER_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "profiles[%zu].%s: at most %d bytes", i,
                     field, SEG_MASTER_MAX);
        return -1;
    }
    return 0;
}

static int seg__validate(cdp_rpc_call *call, const Cdp__V1__EvaluateRequest *req)
{
    if (req->n_profiles > SEG_MAX_TOUCHES) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "profiles: at most %d per call",
                     SEG_MAX_TOUCHES);
        return -1;
    }
    for (size_t i = 0; i < req->n_profiles; i++) {
        const Cdp__V1__ProfileTouch *t = req->profiles[i];
        if (seg__check_master(call, "master_id", i, t->master_id) != 0)
            return -1;
        for (size_t k = 0; k < t->n_merged_ids; k++)
            if (seg__check_master(call, "merged_ids", i, t->merged_ids[k]) != 0)
                return -1;
    }
    return 0;
}

/* The JSON array of a touch's event names (malloc'd). */
static char *seg__ev_json(const Cdp__V1__ProfileTouch *t)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < t->n_events; i++)
        json_array_append_new(a, json_string(t->events[i]));
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

void seg_evaluate(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__EvaluateRequest *req = (const Cdp__V1__EvaluateRequest *)msg;
    seg_svc *s = ud;
    if (seg__validate(call, req) != 0)
        return;
    if (!s->defs_loaded) {
        /* an empty snapshot would evaluate nothing: the caller retries */
        cdp_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "segment definitions not loaded yet");
        return;
    }
    seg_batch *b = calloc(1, sizeof(*b));
    size_t n = req->n_profiles;
    if (b) {
        b->touches = calloc(n ? n : 1, sizeof(seg_touch));
        b->ev_json = calloc(n ? n : 1, sizeof(char *));
    }
    if (!b || !b->touches || !b->ev_json) {
        if (b)
            seg__batch_free(b);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    b->call = call;
    b->ntouch = n;
    cdp__v1__evaluate_response__init(&b->resp);
    b->resp.profiles = (int32_t)n;
    b->pending = 1; /* held while issuing */
    for (size_t i = 0; i < n; i++) {
        const Cdp__V1__ProfileTouch *pt = req->profiles[i];
        b->touches[i] = (seg_touch){ pt->events,   pt->n_events,   pt->traits, pt->n_traits,
                                     pt->channels, pt->n_channels, pt->revenue };
        b->ev_json[i] = seg__ev_json(pt);
        for (size_t k = 0; k < pt->n_merged_ids; k++) {
            seg_eval_target lt = { .master = pt->merged_ids[k], .mode = SEG_SEL_EXIT_ALL,
                                   .unregister_known = 1 };
            b->pending++;
            seg_eval_profile(s, &lt, seg__batch_one_done, b);
        }
        seg_eval_target t = {
            .master = pt->master_id,
            .mode = pt->n_merged_ids ? SEG_SEL_ALL : SEG_SEL_TOUCH,
            .touch = &b->touches[i],
            .ev_json = b->ev_json[i] ? b->ev_json[i] : "[]",
            .mid = pt->message_id,
            .register_known = 1,
        };
        b->pending++;
        seg_eval_profile(s, &t, seg__batch_one_done, b);
    }
    seg_eval_result none = { .code = GRPC_STATUS_OK };
    seg__batch_one_done(&none, b);
}
