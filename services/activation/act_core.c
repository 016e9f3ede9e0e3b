/* act_core: the pure rules of activation (see act_core.h). */
#include "act_core.h"
#include "cdp_redis_status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

/* ------------------------------------------------------------------ strings */

int act_id_valid(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok || n >= ACT_ID_MAX)
            return 0;
    }
    return n > 0;
}

int act_str_set(char **field, const char *v)
{
    char *copy = strdup(v);
    if (!copy)
        return -1;
    if (*field && *field != (char *)protobuf_c_empty_string)
        free(*field);
    *field = copy;
    return 0;
}

/* ------------------------------------------------------------------ validation */

/* The scheme and host of a webhook URL: "http(s)://" then a host that is
 * not empty and stops at '/', '?', '#' or the end. */
static int act__url_ok(const char *url, char *err, size_t errlen)
{
    const char *rest;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else {
        snprintf(err, errlen, "destination.url: must start with http:// or https://");
        return -1;
    }
    size_t host = strcspn(rest, "/?#");
    if (host == 0 || rest[0] == ':' || rest[0] == '@') {
        snprintf(err, errlen, "destination.url: must name a host");
        return -1;
    }
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "destination.url: must not contain spaces or control characters");
            return -1;
        }
    return 0;
}

static int act__len_ok(const char *field, const char *v, size_t max, char *err, size_t errlen)
{
    if (strlen(v) > max) {
        snprintf(err, errlen, "destination.%s: at most %zu bytes", field, max);
        return -1;
    }
    return 0;
}

static int act__int_default(const char *field, int32_t *v, int32_t def, int32_t min, int32_t max,
                            char *err, size_t errlen)
{
    if (*v == 0)
        *v = def;
    if (*v < min || *v > max) {
        snprintf(err, errlen, "destination.%s: must be between %" PRId32 " and %" PRId32
                 ", got %" PRId32, field, min, max, *v);
        return -1;
    }
    return 0;
}

static int act__triggers_ok(const Cdp__V1__Destination *d, char *err, size_t errlen)
{
    if (d->n_triggers == 0) {
        snprintf(err, errlen, "destination.triggers: at least one is required");
        return -1;
    }
    if (d->n_triggers > ACT_MAX_TRIGGERS) {
        snprintf(err, errlen, "destination.triggers: at most %d", ACT_MAX_TRIGGERS);
        return -1;
    }
    for (size_t i = 0; i < d->n_triggers; i++) {
        const Cdp__V1__Trigger *t = d->triggers[i];
        if (t->on != CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED &&
            t->on != CDP__V1__CHANGE_KIND__CHANGE_KIND_EXITED) {
            snprintf(err, errlen,
                     "destination.triggers[%zu].on: must be CHANGE_KIND_ENTERED or CHANGE_KIND_EXITED",
                     i);
            return -1;
        }
        if (!act_id_valid(t->segment_id)) {
            snprintf(err, errlen, "destination.triggers[%zu].segment_id: %s", i,
                     t->segment_id[0] ? "must match [A-Za-z0-9_.-]{1,64}" : "required");
            return -1;
        }
        if (t->n_event_names > ACT_MAX_EVENT_NAMES) {
            snprintf(err, errlen, "destination.triggers[%zu].event_names: at most %d", i,
                     ACT_MAX_EVENT_NAMES);
            return -1;
        }
        for (size_t j = 0; j < t->n_event_names; j++) {
            size_t n = strlen(t->event_names[j]);
            if (n == 0 || n > ACT_EVENT_NAME_MAX) {
                snprintf(err, errlen, "destination.triggers[%zu].event_names[%zu]: %s", i, j,
                         n ? "too long" : "must not be empty");
                return -1;
            }
        }
    }
    return 0;
}

int act_dest_validate(Cdp__V1__Destination *d, int keep_secret, char *err, size_t errlen)
{
    if (d->id[0] && !act_id_valid(d->id)) {
        snprintf(err, errlen, "destination.id: must match [A-Za-z0-9_.-]{1,64}");
        return -1;
    }
    if (act__len_ok("name", d->name, ACT_NAME_MAX, err, errlen) ||
        act__len_ok("channel", d->channel, ACT_CHANNEL_MAX, err, errlen) ||
        act__len_ok("purpose", d->purpose, ACT_PURPOSE_MAX, err, errlen) ||
        act__len_ok("url", d->url, ACT_URL_MAX, err, errlen) ||
        act__len_ok("secret", d->secret, ACT_SECRET_MAX, err, errlen))
        return -1;
    switch (d->type) {
    case CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_WEBHOOK:
        if (!d->url[0]) {
            snprintf(err, errlen, "destination.url: required for a webhook");
            return -1;
        }
        if (act__url_ok(d->url, err, errlen))
            return -1;
        if (!(keep_secret && !d->secret[0]) && strlen(d->secret) < ACT_SECRET_MIN) {
            snprintf(err, errlen, "destination.secret: %s", d->secret[0] ? "at least 16 bytes"
                                                                        : "required for a webhook");
            return -1;
        }
        break;
    case CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_GATEWAY:
        if (!d->channel[0]) {
            snprintf(err, errlen, "destination.channel: required for a gateway");
            return -1;
        }
        if (d->url[0] || d->secret[0]) {
            snprintf(err, errlen, "destination.%s: only for webhooks", d->url[0] ? "url" : "secret");
            return -1;
        }
        break;
    default:
        snprintf(err, errlen, "destination.type: required (DESTINATION_TYPE_WEBHOOK or "
                              "DESTINATION_TYPE_GATEWAY)");
        return -1;
    }
    if (act__triggers_ok(d, err, errlen))
        return -1;
    if (act__int_default("max_attempts", &d->max_attempts, ACT_DEFAULT_MAX_ATTEMPTS, 1,
                         ACT_MAX_MAX_ATTEMPTS, err, errlen) ||
        act__int_default("timeout_ms", &d->timeout_ms, ACT_DEFAULT_TIMEOUT_MS, ACT_MIN_TIMEOUT_MS,
                         ACT_MAX_TIMEOUT_MS, err, errlen) ||
        act__int_default("max_in_flight", &d->max_in_flight, ACT_DEFAULT_MAX_IN_FLIGHT, 1,
                         ACT_MAX_MAX_IN_FLIGHT, err, errlen))
        return -1;
    if (!d->purpose[0] && act_str_set(&d->purpose, ACT_DEFAULT_PURPOSE)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

const char *act_dest_channel(const Cdp__V1__Destination *d)
{
    return d->channel[0] ? d->channel : ACT_WEBHOOK_CHANNEL;
}

/* ------------------------------------------------------------------ matching */

int act_trigger_matches(const Cdp__V1__Trigger *t, Cdp__V1__ChangeKind kind, const char *segment,
                        char *const *ev, size_t n_ev)
{
    if (t->on != kind || strcmp(t->segment_id, segment) != 0)
        return 0;
    if (t->n_event_names == 0)
        return 1;
    for (size_t i = 0; i < n_ev; i++)
        for (size_t j = 0; j < t->n_event_names; j++)
            if (strcmp(ev[i], t->event_names[j]) == 0)
                return 1;
    return 0;
}

int act_dest_matches(const Cdp__V1__Destination *d, Cdp__V1__ChangeKind kind,
                     const char *segment, char *const *ev, size_t n_ev)
{
    if (d->disabled)
        return 0;
    for (size_t i = 0; i < d->n_triggers; i++)
        if (act_trigger_matches(d->triggers[i], kind, segment, ev, n_ev))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ changes */

void act_change_clear(act_change *c)
{
    free(c->cid);
    free(c->seg);
    free(c->master);
    free(c->mid);
    for (size_t i = 0; i < c->n_ev; i++)
        free(c->ev[i]);
    free(c->ev);
    memset(c, 0, sizeof(*c));
}

static int act__field_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* Parses the "ev" JSON array of event names. */
static int act__parse_ev(act_change *c, const char *s, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *arr = json_loadb(s, len, 0, &je);
    int rc = -1;
    if (!json_is_array(arr) || json_array_size(arr) > ACT_CHANGE_MAX_EVENTS) {
        snprintf(err, errlen, "ev: must be a JSON array of at most %d strings",
                 ACT_CHANGE_MAX_EVENTS);
        goto out;
    }
    size_t n = json_array_size(arr);
    c->ev = calloc(n ? n : 1, sizeof(char *));
    if (!c->ev) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(arr, i));
        if (!name) {
            snprintf(err, errlen, "ev[%zu]: must be a string", i);
            goto out;
        }
        if (!(c->ev[c->n_ev] = strdup(name))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        c->n_ev++;
    }
    rc = 0;
out:
    json_decref(arr);
    return rc;
}

static int act__parse_at(act_change *c, const char *s, size_t len, char *err, size_t errlen)
{
    int64_t v;
    if (cdp_parse_i64(s, len, &v) != 0 || v < 0) {
        snprintf(err, errlen, "at: must be milliseconds since the epoch");
        return -1;
    }
    c->at_ms = v;
    return 0;
}

int act_change_parse(act_change *c, char *const *kv, const size_t *kvlen, size_t n, char *err,
                     size_t errlen)
{
    memset(c, 0, sizeof(*c));
    int has_kind = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *k = kv[i], *v = kv[i + 1];
        size_t kl = kvlen[i], vl = kvlen[i + 1];
        char **dst = NULL;
        if (act__field_is(k, kl, "cid"))
            dst = &c->cid;
        else if (act__field_is(k, kl, "seg"))
            dst = &c->seg;
        else if (act__field_is(k, kl, "m"))
            dst = &c->master;
        else if (act__field_is(k, kl, "mid"))
            dst = &c->mid;
        if (dst) {
            free(*dst);
            if (!(*dst = strndup(v, vl))) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
        } else if (act__field_is(k, kl, "kind")) {
            if (act__field_is(v, vl, "entered"))
                c->kind = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
            else if (act__field_is(v, vl, "exited"))
                c->kind = CDP__V1__CHANGE_KIND__CHANGE_KIND_EXITED;
            else {
                snprintf(err, errlen, "kind: must be entered or exited");
                goto fail;
            }
            has_kind = 1;
        } else if (act__field_is(k, kl, "at")) {
            if (act__parse_at(c, v, vl, err, errlen))
                goto fail;
        } else if (act__field_is(k, kl, "ev") && !c->ev) {
            if (act__parse_ev(c, v, vl, err, errlen))
                goto fail;
        }
    }
    const char *missing = !c->cid || !c->cid[0] ? "cid"
                          : !c->seg || !c->seg[0] ? "seg"
                          : !c->master || !c->master[0] ? "m"
                          : !has_kind ? "kind" : NULL;
    if (missing) {
        snprintf(err, errlen, "%s: required", missing);
        goto fail;
    }
    if (!c->mid && !(c->mid = strdup(""))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return 0;
fail:
    act_change_clear(c);
    return -1;
}

/* ------------------------------------------------------------------ deliveries */

int act_delivery_id(const char *dest, const char *change_id, char out[ACT_DELIVERY_ID_MAX])
{
    if (!act_id_valid(dest))
        return -1;
    unsigned char h[ACT_DELIVERY_HASH_HEX / 2];
    crypto_generichash_state st;
    /* The destination id cannot contain the NUL that separates the two. */
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const unsigned char *)dest, strlen(dest) + 1);
    crypto_generichash_update(&st, (const unsigned char *)change_id, strlen(change_id));
    crypto_generichash_final(&st, h, sizeof(h));
    size_t n = strlen(dest);
    memcpy(out, dest, n);
    out[n] = ':';
    sodium_bin2hex(out + n + 1, ACT_DELIVERY_HASH_HEX + 1, h, sizeof(h));
    return 0;
}

int act_delivery_dest(const char *delivery_id, char dest[ACT_ID_MAX + 1])
{
    const char *colon = strchr(delivery_id, ':');
    if (!colon)
        return -1;
    size_t n = (size_t)(colon - delivery_id);
    if (n == 0 || n > ACT_ID_MAX || strlen(colon + 1) != ACT_DELIVERY_HASH_HEX)
        return -1;
    for (const char *p = colon + 1; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return -1;
    memcpy(dest, delivery_id, n);
    dest[n] = '\0';
    return act_id_valid(dest) ? 0 : -1;
}

int64_t act_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t rnd)
{
    if (base_ms <= 0 || cap_ms <= 0)
        return 0;
    int64_t ceiling = base_ms;
    for (int i = 0; i < attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > INT64_MAX / 2 ? INT64_MAX : ceiling * 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    return (int64_t)(rnd % ((uint64_t)ceiling + 1));
}

act_http_outcome act_http_classify(int failed, long status)
{
    if (failed)
        return ACT_HTTP_RETRY;
    if (status >= 200 && status < 300)
        return ACT_HTTP_DELIVERED;
    if (status == 408 || status == 429 || status >= 500)
        return ACT_HTTP_RETRY;
    if (status >= 400)
        return ACT_HTTP_PERMANENT;
    return ACT_HTTP_RETRY;
}
