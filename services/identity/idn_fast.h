/* idn_fast: the pure decisions of the fast path, resolution's common case
 * (docs/identity.md, "The common case").
 *
 * An event is in the common case when every one of its identifier keys holds
 * the same master id M as a confirmed claim (no pending mark), and M's hash
 * has neither merged_into nor a merge-record flag for the event's message.
 * A confirmed claim promises the identifier is in M's set, so the union the
 * planner would check is M's own set: nothing grows, no limit can be
 * violated, nothing merges, nothing is added, and the answer is M with every
 * identifier kept. idn_fast_plan writes that plan without running the
 * planner; the unit tests check that the planner agrees.
 *
 * Within one ResolveBatch, a request whose identifiers are exactly those of
 * an earlier request of its group shares that request's answer when the
 * earlier one kept every identifier and nothing was written in between
 * (idn_fast_same_idents). */
#ifndef IDN_FAST_H
#define IDN_FAST_H

#include <stddef.h>

#include "idn_rules.h"

/* Whether n identifiers (n >= 1) whose keys hold owner[i] (a master id, ""
 * for an unmapped identifier) with pending[i] set for unconfirmed claims all
 * map to one master by confirmed claims. Returns 1 or 0. */
int idn_fast_candidate(const char *const *owner, const unsigned char *pending, size_t n);

/* Writes the plan of the common case for n identifiers: all kept, the one
 * master (index 0) survives, nothing merges. */
void idn_fast_plan(size_t n, idn_plan *out);

/* Whether two events carry the same identifiers in the same order (the
 * planner's ranks depend on the order). Returns 1 or 0. */
int idn_fast_same_idents(const idn_ident *a, size_t na, const idn_ident *b, size_t nb);

#endif
