/* idn_keys: key names, master ids and merge records (see idn_keys.h). */
#include "idn_keys.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define IDN_KEY_PREFIX "cdp:idn:"
/* 12 hex digits of milliseconds last until the year 10889. */
#define IDN_MS_HEX_DIGITS 12

/* ------------------------------------------------------------- master ids */

void idn_master_id_format(int64_t ms, const unsigned char *rnd, char *out) {
    static const char hex[] = "0123456789abcdef";
    uint64_t t = (uint64_t)ms;
    out[0] = 'm';
    for (int i = IDN_MS_HEX_DIGITS; i >= 1; i--) {
        out[i] = hex[t & 0xf];
        t >>= 4;
    }
    char *p = out + 1 + IDN_MS_HEX_DIGITS;
    for (int i = 0; i < IDN_MASTER_RANDOM_BYTES; i++) {
        *p++ = hex[rnd[i] >> 4];
        *p++ = hex[rnd[i] & 0xf];
    }
    *p = '\0';
}

int idn_master_id_new(int64_t now_ms, char *out) {
    unsigned char rnd[IDN_MASTER_RANDOM_BYTES];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    idn_master_id_format(now_ms, rnd, out);
    return 0;
}

int idn_master_id_valid(const char *s) {
    if (s == NULL || s[0] != 'm' || strlen(s) != IDN_MASTER_ID_LEN)
        return 0;
    for (size_t i = 1; i < IDN_MASTER_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int idn_ident_value_parse(const char *v, size_t len, char *id, int *pending) {
    *pending = len == IDN_MASTER_ID_LEN + 1 && v[IDN_MASTER_ID_LEN] == IDN_PENDING_MARK;
    if (len != IDN_MASTER_ID_LEN + (size_t)*pending)
        return -1;
    memcpy(id, v, IDN_MASTER_ID_LEN);
    id[IDN_MASTER_ID_LEN] = '\0';
    return idn_master_id_valid(id) ? 0 : -1;
}

void idn_ident_value_pending(const char *id, char *out) {
    snprintf(out, IDN_IDENT_VALUE_BUFSZ, "%s%c", id, IDN_PENDING_MARK);
}

/* ------------------------------------------------------------------- keys */

/* A malloc'd printf result, or NULL on failure. */
static char *fmt_alloc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_alloc(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* prefix + a [+ sep + b] + suffix, malloc'd (b may be NULL): the keys built
 * once per identifier and event, without printf. */
static char *concat(const char *prefix, const char *a, char sep, const char *b,
                    const char *suffix) {
    size_t lp = strlen(prefix), la = strlen(a), lb = b ? strlen(b) + 1 : 0, ls = strlen(suffix);
    char *s = malloc(lp + la + lb + ls + 1);
    if (s == NULL)
        return NULL;
    char *p = s;
    memcpy(p, prefix, lp);
    p += lp;
    memcpy(p, a, la);
    p += la;
    if (b != NULL) {
        *p++ = sep;
        memcpy(p, b, lb - 1);
        p += lb - 1;
    }
    memcpy(p, suffix, ls + 1);
    return s;
}

char *idn_key_ident(const char *type, const char *value) {
    return concat(IDN_KEY_PREFIX "{i:", type, ':', value, "}");
}

char *idn_key_ident_of_member(const char *member) {
    return concat(IDN_KEY_PREFIX "{i:", member, 0, NULL, "}");
}

char *idn_key_master(const char *id) {
    return concat(IDN_KEY_PREFIX "{m:", id, 0, NULL, "}");
}

char *idn_key_master_ids(const char *id) {
    return fmt_alloc(IDN_KEY_PREFIX "{m:%s}:ids", id);
}

char *idn_key_master_merges(const char *id) {
    return fmt_alloc(IDN_KEY_PREFIX "{m:%s}:merges", id);
}

char *idn_key_master_evm(const char *id, const char *message_id) {
    return fmt_alloc(IDN_KEY_PREFIX "{m:%s}:evm:%s", id, message_id);
}

char *idn_key_master_pm(const char *id) {
    return fmt_alloc(IDN_KEY_PREFIX "{m:%s}:pm", id);
}

char *idn_field_evm(const char *message_id) {
    return concat(IDN_F_EVM_PREFIX, message_id, 0, NULL, "");
}

char *idn_member(const char *type, const char *value) {
    return concat("", type, ':', value, "");
}

long idn_member_split(const char *m, size_t len) {
    const char *colon = memchr(m, ':', len);
    if (colon == NULL || colon == m)
        return -1;
    return (long)(colon - m);
}

/* ---------------------------------------------------------- merge records */

char *idn_merge_encode(const char *survivor, const char *loser, int64_t merged_at_ms,
                       const char *message_id) {
    json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "survivor_id", survivor, "loser_id", loser,
                          "merged_at_ms", (json_int_t)merged_at_ms, "message_id",
                          message_id ? message_id : "");
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int idn_merge_decode(const char *json, size_t len, idn_merge *m) {
    memset(m, 0, sizeof *m);
    json_t *o = json_loadb(json, len, 0, NULL);
    if (o == NULL)
        return -1;
    const char *s = NULL, *l = NULL, *mid = NULL;
    json_int_t at = 0;
    int rc = json_unpack(o, "{s:s,s:s,s:I,s:s}", "survivor_id", &s, "loser_id", &l,
                         "merged_at_ms", &at, "message_id", &mid);
    if (rc == 0 && idn_master_id_valid(s) && idn_master_id_valid(l)) {
        memcpy(m->survivor, s, IDN_MASTER_ID_BUFSZ);
        memcpy(m->loser, l, IDN_MASTER_ID_BUFSZ);
        m->merged_at_ms = (int64_t)at;
        m->message_id = strdup(mid);
    }
    json_decref(o);
    return m->message_id != NULL ? 0 : -1;
}

void idn_merge_clear(idn_merge *m) {
    free(m->message_id);
    m->message_id = NULL;
}
