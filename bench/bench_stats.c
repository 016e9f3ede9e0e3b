/* bench_stats: see bench_stats.h. */
#include <stdlib.h>

#include "bench_stats.h"

enum { LAT_INITIAL_CAP = 4096, NS_PER_US = 1000 };
#define US_PER_MS 1000.0

void bench_lat_init(bench_lat *l) {
    l->us = NULL;
    l->n = l->cap = 0;
    l->sorted = 1;
}

void bench_lat_free(bench_lat *l) {
    free(l->us);
    bench_lat_init(l);
}

int bench_lat_add_ns(bench_lat *l, uint64_t ns) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : LAT_INITIAL_CAP;
        uint32_t *us = realloc(l->us, cap * sizeof(*us));
        if (!us)
            return -1;
        l->us = us;
        l->cap = cap;
    }
    uint64_t us = ns / NS_PER_US;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->sorted = 0;
    return 0;
}

static int lat_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

double bench_lat_quantile_ms(bench_lat *l, double q) {
    if (l->n == 0)
        return 0;
    if (!l->sorted) {
        qsort(l->us, l->n, sizeof(*l->us), lat_cmp);
        l->sorted = 1;
    }
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    /* Nearest rank: the smallest sample with at least q of them at or below. */
    size_t rank = (size_t)(q * (double)l->n + 0.999999);
    size_t i = rank ? rank - 1 : 0;
    if (i >= l->n) i = l->n - 1;
    return l->us[i] / US_PER_MS;
}

double bench_lat_mean_ms(const bench_lat *l) {
    if (l->n == 0)
        return 0;
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += l->us[i];
    return sum / (double)l->n / US_PER_MS;
}
