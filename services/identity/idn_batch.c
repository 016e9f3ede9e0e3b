/* idn_batch: connected components of a batch's requests (see idn_batch.h).
 * Sort every (member, request) pair by member, union the requests of equal
 * members, then number the components: O(m log m) for m members. */
#include "idn_batch.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *member;
    size_t req;
} member_ref;

static int cmp_ref(const void *a, const void *b) {
    return strcmp(((const member_ref *)a)->member, ((const member_ref *)b)->member);
}

static size_t uf_find(size_t *parent, size_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static void uf_union(size_t *parent, size_t a, size_t b) {
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a != b)
        parent[a > b ? a : b] = a < b ? a : b; /* the earlier request is the root */
}

long idn_batch_group(size_t n, const char *const *const *members, const size_t *n_members,
                     size_t *group) {
    size_t total = 0;
    for (size_t r = 0; r < n; r++)
        total += n_members[r];
    size_t *parent = malloc((n ? n : 1) * sizeof *parent);
    member_ref *refs = malloc((total ? total : 1) * sizeof *refs);
    if (parent == NULL || refs == NULL) {
        free(parent);
        free(refs);
        return -1;
    }
    size_t k = 0;
    for (size_t r = 0; r < n; r++) {
        parent[r] = r;
        for (size_t j = 0; j < n_members[r]; j++)
            refs[k++] = (member_ref){members[r][j], r};
    }
    qsort(refs, total, sizeof *refs, cmp_ref);
    for (size_t i = 1; i < total; i++)
        if (strcmp(refs[i].member, refs[i - 1].member) == 0)
            uf_union(parent, refs[i].req, refs[i - 1].req);
    long n_groups = 0;
    for (size_t r = 0; r < n; r++) {
        size_t root = uf_find(parent, r);
        group[r] = root == r ? (size_t)n_groups++ : group[root]; /* root precedes r */
    }
    free(parent);
    free(refs);
    return n_groups;
}
