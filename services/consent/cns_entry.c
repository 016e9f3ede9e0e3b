/* cns_entry: entry checks, stamps and JSON form (see cns_entry.h). */
#include "cns_entry.h"

#include <stdio.h>
#include <string.h>

#define CNS_MS_PER_S 1000
#define CNS_NS_PER_MS 1000000
#define CNS_NANOS_MAX 999999999
#define CNS_TS_MAX_S INT64_C(253402300799)

int cns_copy(char *dst, size_t dstsz, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n >= dstsz)
        return -1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int cns_legal_basis_ok(const char *s)
{
    static const char *const bases[] = { "consent",         "contract",    "legal_obligation",
                                         "vital_interests", "public_task", "legitimate_interests" };
    if (!s || !s[0])
        return 1;
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++)
        if (strcmp(s, bases[i]) == 0)
            return 1;
    return 0;
}

int64_t cns_ts_ms(const Google__Protobuf__Timestamp *ts)
{
    if (!ts || ts->seconds < 0 || ts->seconds > CNS_TS_MAX_S || ts->nanos < 0 ||
        ts->nanos > CNS_NANOS_MAX)
        return -1;
    return ts->seconds * CNS_MS_PER_S + ts->nanos / CNS_NS_PER_MS;
}

void cns_ms_ts(int64_t ms, Google__Protobuf__Timestamp *ts)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = ms / CNS_MS_PER_S;
    ts->nanos = (int32_t)(ms % CNS_MS_PER_S) * CNS_NS_PER_MS;
}

int cns_stamp_wins(int64_t ts, const char *mid, int64_t old_ts, const char *old_mid)
{
    if (ts != old_ts)
        return ts > old_ts;
    if (!mid[0] && !old_mid[0])
        return 1;
    return strcmp(mid, old_mid) > 0;
}

int cns_entry_field(const char *purpose, const char *channel, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "e:%s:%s", purpose, channel);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

json_t *cns_entry_to_json(const cns_entry *e)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "p", e->purpose, "c", e->channel,
                     "s", cns_status_name(e->status), "src", e->source, "ts",
                     (json_int_t)e->updated_ms, "lb", e->legal_basis, "j", e->jurisdiction, "a",
                     e->actor, "m", e->message_id);
}

/* Copies the string member `key` of j (absent: "") into dst. */
static int cns__get_str(const json_t *j, const char *key, char *dst, size_t dstsz)
{
    const json_t *v = json_object_get(j, key);
    if (!v) {
        dst[0] = '\0';
        return 0;
    }
    return json_is_string(v) ? cns_copy(dst, dstsz, json_string_value(v)) : -1;
}

int cns_entry_from_json(const json_t *j, cns_entry *e)
{
    memset(e, 0, sizeof(*e));
    if (!json_is_object(j))
        return -1;
    char status[CNS_NAME_BUFSZ];
    const json_t *ts = json_object_get(j, "ts");
    if (cns__get_str(j, "p", e->purpose, sizeof e->purpose) ||
        cns__get_str(j, "c", e->channel, sizeof e->channel) ||
        cns__get_str(j, "s", status, sizeof status) ||
        cns__get_str(j, "src", e->source, sizeof e->source) ||
        cns__get_str(j, "lb", e->legal_basis, sizeof e->legal_basis) ||
        cns__get_str(j, "j", e->jurisdiction, sizeof e->jurisdiction) ||
        cns__get_str(j, "a", e->actor, sizeof e->actor) ||
        cns__get_str(j, "m", e->message_id, sizeof e->message_id) || (ts && !json_is_integer(ts)))
        return -1;
    if (status[0] && cns_status_parse(status, &e->status) != 0)
        return -1;
    e->updated_ms = ts ? (int64_t)json_integer_value(ts) : 0;
    return 0;
}

/* The string member `key` of j, or "" (protobuf-c wants non-NULL strings). */
static char *cns__str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return (char *)(s ? s : "");
}

int cns_entry_json_to_pb(const char *text, size_t len, json_t *arena,
                         Cdp__V1__ConsentEntry *pb, Google__Protobuf__Timestamp *ts)
{
    cns_entry e;
    json_t *j = json_loadb(text, len, 0, NULL);
    if (!j || cns_entry_from_json(j, &e) != 0 || json_array_append_new(arena, j) != 0) {
        json_decref(j);
        return -1;
    }
    cdp__v1__consent_entry__init(pb);
    pb->purpose = cns__str(j, "p");
    pb->channel = cns__str(j, "c");
    pb->status = (Cdp__V1__ConsentStatus)e.status;
    pb->source = cns__str(j, "src");
    pb->legal_basis = cns__str(j, "lb");
    pb->jurisdiction = cns__str(j, "j");
    pb->actor = cns__str(j, "a");
    pb->message_id = cns__str(j, "m");
    if (json_object_get(j, "ts")) {
        cns_ms_ts(e.updated_ms, ts);
        pb->updated_at = ts;
    }
    return 0;
}
