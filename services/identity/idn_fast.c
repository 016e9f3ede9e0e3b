/* idn_fast: the fast path's pure decisions (see idn_fast.h). */
#include "idn_fast.h"

#include <string.h>

int idn_fast_candidate(const char *const *owner, const unsigned char *pending, size_t n) {
    if (n == 0 || owner[0] == NULL || owner[0][0] == '\0')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pending[i] || owner[i] == NULL || strcmp(owner[i], owner[0]) != 0)
            return 0;
    return 1;
}

void idn_fast_plan(size_t n, idn_plan *out) {
    /* reason[] is read only for dropped identifiers: none here, and clearing
     * it would cost more than the rest of the fast path */
    memset(out->keep, 0, sizeof out->keep);
    memset(out->keep, 1, n);
    out->n_kept = n;
    out->survivor = 0;
    out->n_merge = 0;
}

int idn_fast_same_idents(const idn_ident *a, size_t na, const idn_ident *b, size_t nb) {
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].type, b[i].type) != 0 || strcmp(a[i].value, b[i].value) != 0)
            return 0;
    return 1;
}
