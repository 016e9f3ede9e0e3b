/* ing_touch: what the pipeline tells the services after profile (consent,
 * segmentation), built from a batch's applied entries. Pure: no I/O.
 *
 * - Consent events: a track event named ING_CONSENT_EVENT_NAME carries consent
 *   changes (docs/consent.md); the pipeline hands those to consent, and
 *   the events that merged profiles, so that consent follows the merge.
 * - Touches: one cdp.v1.ProfileTouch per master id of the entries given,
 *   saying which count names, traits and channels the batch wrote and
 *   whether revenue moved, plus the merges that made the master id a
 *   survivor. Segmentation re-evaluates only the segments reading those. */
#ifndef ING_TOUCH_H
#define ING_TOUCH_H

#include <stddef.h>
#include "cdp/v1/segmentation.pb-c.h"
#include "ing_batch.h"
#include "ing_validate.h"


/* 1 when ev is a consent event. */
int ing_is_consent_event(const Cdp__V1__Event *ev);

/* Writes the indexes among idx[0..n) that consent must see into out (room
 * for n; may be idx itself); returns how many: consent events, and events
 * whose resolution carries merges (consent folds each loser's entries into
 * its survivor). */
size_t ing_consent_entries(const ing_batch *b, const size_t *idx, size_t n, size_t *out);

/* The request and everything it points into (owned; strings are copies
 * deduplicated per touch). */
typedef struct {
    Cdp__V1__EvaluateRequest req;
    Cdp__V1__ProfileTouch *touches;
    Cdp__V1__ProfileTouch **touchp;
    size_t n, cap;
} ing_touch_build;

/* Builds Evaluate for the resolved entries idx[0..n) in batch order.
 * Returns 0 or -1 (allocation). */
int ing_touch_build_make(ing_touch_build *out, const ing_batch *b, const size_t *idx, size_t n);
void ing_touch_build_free(ing_touch_build *out);

#endif
