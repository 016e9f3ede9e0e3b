/* seg_eval: the membership path. Every evaluation of a profile (Evaluate,
 * the scheduler, backfill) goes through seg_eval_profile:
 *
 *   1. one pipelined round trip reads the profile (main and daily hashes),
 *      its membership state and pending transitions (all in the profile's
 *      slot), the definitions version, and registers the profile (SADD to
 *      its registry shard);
 *   2. the chosen segments are evaluated on the loop (pure);
 *   3. ONE script per profile (seg_lua apply) compares the results with the
 *      stored state, writes the transitions and records them as pending;
 *   4. every pending transition (new or left by an earlier call that died
 *      midway) is applied to its segment's member index and XADDed to the
 *      change stream, the time-based schedule is updated, and only then are
 *      the pending entries deleted.
 * The callback reports OK only after all of it, so a caller that retries on
 * error never loses a transition, and a replay creates none twice. */
#ifndef SEG_EVAL_H
#define SEG_EVAL_H

#include "seg_service.h"

typedef enum {
    SEG_SEL_TOUCH = 0,   /* segments the touch can affect (all if never seen) */
    SEG_SEL_ALL,         /* every segment */
    SEG_SEL_TIME,        /* time-based segments (the scheduler) */
    SEG_SEL_ONE,         /* one segment (backfill) */
    SEG_SEL_EXIT_ALL,    /* end every membership (merged away) */
} seg_sel_mode;

typedef struct {
    const char *master;
    seg_sel_mode mode;
    const seg_touch *touch;  /* SEG_SEL_TOUCH; must stay valid until cb */
    const char *only;        /* SEG_SEL_ONE: the segment id */
    const char *ev_json;     /* JSON array of event names; NULL: "[]" */
    const char *mid;         /* NULL: "" */
    int register_known;      /* add to the registry */
    int unregister_known;    /* remove from the registry (merged away) */
    int sched_claimed;       /* release the scheduler's lease when done */
} seg_eval_target;

typedef struct {
    grpc_status_code code;
    char msg[SEG_ERR_MAX];
    int evaluations, entered, exited;
    int matched;             /* SEG_SEL_ONE: 1 when a member afterwards */
} seg_eval_result;

typedef void (*seg_eval_cb)(const seg_eval_result *res, void *ud);

/* Evaluates one profile as described above; cb is called exactly once,
 * possibly before this returns (out of memory). Strings of t are copied. */
void seg_eval_profile(seg_svc *s, const seg_eval_target *t, seg_eval_cb cb, void *ud);

#endif
