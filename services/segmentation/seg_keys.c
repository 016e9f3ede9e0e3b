/* seg_keys: key names and Redis outcome classification (seg_keys.h). */
#include "seg_keys.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *seg__fmt2(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

char *seg_pkey(const char *master, int which)
{
    static const char *const pre[SEG_PKEY_COUNT] = { "cdp:prf:{p:", "cdp:prf:{p:",
                                                     "cdp:seg:{p:", "cdp:seg:{p:" };
    static const char *const post[SEG_PKEY_COUNT] = { "}", "}:daily", "}:mem", "}:pending" };
    if (which < 0 || which >= SEG_PKEY_COUNT)
        return NULL;
    return seg__fmt2(pre[which], master, post[which]);
}

char *seg_skey(const char *id, int which)
{
    static const char *const post[SEG_SKEY_COUNT] = { "}:members", "}:idx", "}:bf",
                                                      "}:bf:lease" };
    if (which < 0 || which >= SEG_SKEY_COUNT)
        return NULL;
    return seg__fmt2("cdp:seg:{s:", id, post[which]);
}

unsigned seg_known_shard(const char *master)
{
    /* FNV-1a: stable across processes and versions, unlike a seeded hash */
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)master; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h % SEG_KNOWN_SHARDS;
}

char *seg_known_key(unsigned shard)
{
    char num[16];
    snprintf(num, sizeof(num), "%u", shard);
    return seg__fmt2("cdp:seg:{known:", num, "}");
}


