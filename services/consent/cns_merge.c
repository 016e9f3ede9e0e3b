/* cns_merge: the fold order and the parse of a loser's consent hash (see
 * cns_merge.h). */
#include "cns_merge.h"
#include "cdp_redis_status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define CNS_NUM_MAX 24

int cns_merge_wins(int64_t ts, const char *mid, const char *text, int64_t old_ts,
                   const char *old_mid, const char *old_text)
{
    if (ts != old_ts)
        return ts > old_ts;
    int c = strcmp(mid, old_mid);
    if (c != 0)
        return c > 0;
    return strcmp(text, old_text) > 0;
}

static int cns__is(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

/* A decimal time in ms, 0 .. CNS_TS_MAX_MS; -1 when malformed. */
static int64_t cns__ms(const char *s, size_t len)
{
    int64_t v;
    if (cdp_parse_i64(s, len, &v) != 0 || v < 0 || v > CNS_TS_MAX_MS)
        return -1;
    return v;
}

/* Parses one entry field into out; 0, or -1 when it is not an entry of the
 * purpose and channel its name says. */
static int cns__entry(const char *name, size_t nlen, const char *val, size_t vlen,
                      cns_merge_entry *out)
{
    json_t *j = json_loadb(val, vlen, 0, NULL);
    int rc = j ? cns_entry_from_json(j, &out->e) : -1;
    json_decref(j);
    char field[CNS_FIELD_BUFSZ];
    if (rc != 0 || !out->e.purpose[0] || !out->e.channel[0] ||
        cns_entry_field(out->e.purpose, out->e.channel, field, sizeof field) != 0 ||
        !cns__is(name, nlen, field) || memchr(val, '\0', vlen))
        return -1;
    return 0;
}

int cns_merge_parse(cns_merge_state *st, size_t n, const char *const *names, const size_t *nlen,
                    const char *const *vals, const size_t *vlen)
{
    memset(st, 0, sizeof(*st));
    st->entries = calloc(n ? n : 1, sizeof(*st->entries));
    if (!st->entries)
        return -1;
    const char *jt = NULL, *jur = NULL, *jm = "";
    size_t jtlen = 0, jlen = 0, jmlen = 0;
    for (size_t i = 0; i < n; i++) {
        if (cns__is(names[i], nlen[i], "j")) {
            jur = vals[i], jlen = vlen[i];
        } else if (cns__is(names[i], nlen[i], "jt")) {
            jt = vals[i], jtlen = vlen[i];
        } else if (cns__is(names[i], nlen[i], "jm")) {
            jm = vals[i], jmlen = vlen[i];
        } else if (nlen[i] > 2 && memcmp(names[i], "e:", 2) == 0) {
            cns_merge_entry *e = &st->entries[st->n];
            if (cns__entry(names[i], nlen[i], vals[i], vlen[i], e) != 0) {
                st->skipped++;
                continue;
            }
            if (!(e->json = strndup(vals[i], vlen[i]))) {
                cns_merge_state_free(st);
                return -1;
            }
            st->n++;
        }
    }
    if (jur) {
        int64_t ms = jt ? cns__ms(jt, jtlen) : -1;
        if (ms < 0 || jlen == 0 || jlen >= sizeof st->jurisdiction ||
            jmlen >= sizeof st->jurisdiction_mid || memchr(jur, '\0', jlen) ||
            memchr(jm, '\0', jmlen)) {
            st->skipped++;
        } else {
            memcpy(st->jurisdiction, jur, jlen);
            st->jurisdiction[jlen] = '\0';
            memcpy(st->jurisdiction_mid, jm, jmlen);
            st->jurisdiction_mid[jmlen] = '\0';
            st->jurisdiction_ms = ms;
        }
    }
    return 0;
}

void cns_merge_state_free(cns_merge_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->entries[i].json);
    free(st->entries);
    memset(st, 0, sizeof(*st));
}
