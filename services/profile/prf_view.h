/* prf_view: a stored profile (prf_profile, as the read script returned it)
 * turned into the cdp.v1.ProfileView that GetProfile answers. Pure. */
#ifndef PRF_VIEW_H
#define PRF_VIEW_H

#include <stddef.h>
#include "prf_fold.h"
#include "cdp/v1/profile.pb-c.h"

/* Builds a view of p under `master_id` with at most `timeline_limit`
 * timeline entries, newest first. Event counts, identifiers and merged ids
 * are sorted by name; channels by last interaction, newest first. Stored
 * entries that do not decode are left out. Returns a new view to free with
 * prf_view_free, or NULL when out of memory. */
Cdp__V1__ProfileView *prf_view_build(const prf_profile *p, const char *master_id,
                                     size_t timeline_limit);
void prf_view_free(Cdp__V1__ProfileView *v);

#endif
