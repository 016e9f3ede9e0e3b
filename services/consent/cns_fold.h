/* cns_fold: folds the consent of a profile that identity merged away (the
 * loser) into its survivor (docs/consent.md "Merges"). Two steps, each in
 * one cluster slot, never a script across slots:
 *   1. HGETALL of the loser's consent hash (loser's slot; one command);
 *   2. the fold script (cns_lua.h "fold") on the survivor's keys, which
 *      keeps, per entry and for the jurisdiction, the greater value by
 *      cns_merge_wins and audits each change as "merge". A survivor that
 *      was itself merged away answers redirect and the fold follows it (at
 *      most CNS_MAX_REDIRECTS hops), so chains end on the last survivor.
 * Running a fold again changes nothing, so the caller may retry freely. */
#ifndef CNS_FOLD_H
#define CNS_FOLD_H

#include <grpc/status.h>

#include "cns_service.h"

/* Called exactly once, possibly before cns_fold_run returns (out of
 * memory). code OK: survivor is the profile written (the last of the
 * chain) and changed the number of values that won (0 on a re-run or when
 * the loser has no consent data); otherwise msg says why (UNAVAILABLE when
 * Redis is down). */
typedef void (*cns_fold_cb)(grpc_status_code code, const char *msg, const char *survivor,
                            long long changed, void *ud);

/* Folds loser into survivor; message_id (the merge's) is the context of
 * the audit records. The strings are copied. */
void cns_fold_run(cns_svc *cs, const char *loser, const char *survivor, const char *message_id,
                  cns_fold_cb cb, void *ud);

#endif
