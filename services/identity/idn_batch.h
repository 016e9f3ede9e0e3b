/* idn_batch: groups the requests of one ResolveBatch call into connected
 * components by shared identifiers (pure).
 *
 * Requests that share an identifier, directly or through a chain of other
 * requests, must see each other's effect, so the service resolves each group
 * sequentially in batch order while different groups run concurrently (their
 * Redis commands share pipelines). */
#ifndef IDN_BATCH_H
#define IDN_BATCH_H

#include <stddef.h>

/* members[r] lists the n_members[r] normalized members ("type:value") of
 * request r. Writes group[r] for each of the n requests: groups are numbered
 * 0.. in order of their first request. Returns the number of groups, or -1
 * on allocation failure. */
long idn_batch_group(size_t n, const char *const *const *members, const size_t *n_members,
                     size_t *group);

#endif
