/* cns_event: consent events to entries (see cns_event.h). */
#include "cns_event.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cdp_json.h"

#define CNS_DEFAULT_EVENT_SOURCE "event"
#define CNS_ACTOR_EVENT_PREFIX "event:"

/* The single-change keys, which may not sit beside "consents". */
static const char *const cns__change_keys[] = { "purpose",      "channel", "status",
                                                "legal_basis", "jurisdiction", "source" };

typedef struct {
    const cns_policy *pol;
    char *field;
    size_t fieldlen;
    char *err;
    size_t errlen;
} cns__ctx;

static int cns__bad(cns__ctx *c, const char *prefix, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cns__bad(cns__ctx *c, const char *prefix, const char *key, const char *fmt, ...)
{
    snprintf(c->field, c->fieldlen, "%s%s", prefix, key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int cns_event_is_consent(const Cdp__V1__Event *ev)
{
    return ev && ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK && ev->event &&
           strcmp(ev->event, CNS_EVENT_NAME) == 0;
}


/* The string at key: 0 with *out NULL when absent (or JSON null), 0 with
 * *out set when a string, -1 (error set) for any other type. */
static int cns__opt_str(cns__ctx *c, const Google__Protobuf__Struct *s, const char *prefix,
                        const char *key, const char **out)
{
    const Google__Protobuf__Value *v = cdp_struct_get(s, key);
    *out = NULL;
    if (!v || v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE ||
        v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET)
        return 0;
    if (v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
        return cns__bad(c, prefix, key, "must be a string");
    *out = v->string_value ? v->string_value : "";
    return 0;
}

/* One change object s (path prefix e.g. "properties." or
 * "properties.consents[2].") into e. */
static int cns__change(cns__ctx *c, const Cdp__V1__Event *ev, const Google__Protobuf__Struct *s,
                       const char *prefix, cns_entry *e)
{
    const char *purpose, *channel, *status, *basis, *jur, *source;
    if (cns__opt_str(c, s, prefix, "purpose", &purpose) || cns__opt_str(c, s, prefix, "channel", &channel) ||
        cns__opt_str(c, s, prefix, "status", &status) ||
        cns__opt_str(c, s, prefix, "legal_basis", &basis) ||
        cns__opt_str(c, s, prefix, "jurisdiction", &jur) || cns__opt_str(c, s, prefix, "source", &source))
        return -1;
    if (!purpose || !purpose[0])
        return cns__bad(c, prefix, "purpose", "required");
    if (cns_policy_purpose(c->pol, purpose) < 0)
        return cns__bad(c, prefix, "purpose", "unknown purpose \"%.32s\"", purpose);
    if (!channel)
        channel = CNS_ALL_CHANNELS;
    if (!cns_policy_channel_ok(c->pol, channel))
        return cns__bad(c, prefix, "channel", "unknown channel \"%.32s\"", channel);
    if (!status || !status[0])
        return cns__bad(c, prefix, "status", "required");
    if (cns_status_parse(status, &e->status) != 0)
        return cns__bad(c, prefix, "status", "must be granted, denied, revoked or unset");
    if (!cns_legal_basis_ok(basis))
        return cns__bad(c, prefix, "legal_basis",
                        "must be consent, contract, legal_obligation, vital_interests, "
                        "public_task or legitimate_interests");
    if (jur && jur[0] && cns_policy_jurisdiction(c->pol, jur) < 0)
        return cns__bad(c, prefix, "jurisdiction", "unknown jurisdiction \"%.32s\"", jur);
    if (!source || !source[0])
        source = ev->source && ev->source[0] ? ev->source : CNS_DEFAULT_EVENT_SOURCE;
    if (cns_copy(e->source, sizeof e->source, source) != 0)
        return cns__bad(c, prefix, "source", "at most %d bytes", CNS_SOURCE_MAX);
    /* names were checked against the policy, whose names fit */
    cns_copy(e->purpose, sizeof e->purpose, purpose);
    cns_copy(e->channel, sizeof e->channel, channel);
    cns_copy(e->legal_basis, sizeof e->legal_basis, basis);
    cns_copy(e->jurisdiction, sizeof e->jurisdiction, jur);
    snprintf(e->actor, sizeof e->actor, "%s%s", CNS_ACTOR_EVENT_PREFIX, e->source);
    return 0;
}

/* The consents list into out[0..max). */
static int cns__list(cns__ctx *c, const Cdp__V1__Event *ev, const Google__Protobuf__Value *v,
                     cns_entry *out, size_t max, size_t *n)
{
    if (v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE || !v->list_value)
        return cns__bad(c, "properties.", "consents", "must be a list of objects");
    const Google__Protobuf__ListValue *l = v->list_value;
    if (l->n_values == 0)
        return cns__bad(c, "properties.", "consents", "must not be empty");
    if (l->n_values > max)
        return cns__bad(c, "properties.", "consents", "more than %zu changes", max);
    for (size_t i = 0; i < l->n_values; i++) {
        char prefix[CNS_FIELD_MAX];
        snprintf(prefix, sizeof prefix, "properties.consents[%zu]", i);
        const Google__Protobuf__Value *item = l->values[i];
        memset(&out[i], 0, sizeof out[i]);
        if (!item || item->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
            return cns__bad(c, prefix, "", "must be an object");
        strcat(prefix, ".");
        if (cns__change(c, ev, item->struct_value, prefix, &out[i]) != 0)
            return -1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(out[k].purpose, out[i].purpose) == 0 &&
                strcmp(out[k].channel, out[i].channel) == 0)
                return cns__bad(c, prefix, "channel", "%s/%s already changed by consents[%zu]",
                                out[i].purpose, out[i].channel, k);
    }
    *n = l->n_values;
    return 0;
}

int cns_event_parse(const Cdp__V1__Event *ev, cns_entry *out, size_t max, size_t *n,
                    const cns_policy *pol, char *field, size_t fieldlen, char *err,
                    size_t errlen)
{
    cns__ctx c = { pol, field, fieldlen, err, errlen };
    *n = 0;
    if (!cns_event_is_consent(ev))
        return 0;
    if (!ev->message_id || !ev->message_id[0])
        return cns__bad(&c, "", "message_id", "required");
    if (strlen(ev->message_id) > CNS_MID_MAX)
        return cns__bad(&c, "", "message_id", "at most %d bytes", CNS_MID_MAX);
    int64_t ts = ev->timestamp ? cns_ts_ms(ev->timestamp) : cns_ts_ms(ev->received_at);
    if (ts < 0)
        return cns__bad(&c, "", ev->timestamp ? "timestamp" : "received_at",
                        ev->timestamp || ev->received_at ? "out of range"
                                                         : "required (timestamp or received_at)");
    if (max == 0)
        return cns__bad(&c, "", "properties", "no room for a change");
    const Google__Protobuf__Struct *props = ev->properties;
    const Google__Protobuf__Value *list = cdp_struct_get(props, "consents");
    int rc;
    if (list) {
        for (size_t i = 0; i < sizeof cns__change_keys / sizeof cns__change_keys[0]; i++)
            if (cdp_struct_get(props, cns__change_keys[i]))
                return cns__bad(&c, "properties.", cns__change_keys[i],
                                "not allowed beside properties.consents");
        rc = cns__list(&c, ev, list, out, max, n);
    } else {
        memset(&out[0], 0, sizeof out[0]);
        rc = cns__change(&c, ev, props, "properties.", &out[0]);
        *n = rc == 0 ? 1 : 0;
    }
    if (rc != 0) {
        *n = 0;
        return -1;
    }
    for (size_t i = 0; i < *n; i++) {
        out[i].updated_ms = ts;
        cns_copy(out[i].message_id, sizeof out[i].message_id, ev->message_id);
    }
    return 1;
}
