/* cns_policy: configuration parsing and the consent decision (see
 * cns_policy.h). */
#include "cns_policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ names */

static int cns__name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Length of the name starting at s (characters of the name alphabet). */
static size_t cns__name_len(const char *s)
{
    size_t n = 0;
    while (cns__name_char(s[n]))
        n++;
    return n;
}

static int cns__find(const char (*names)[CNS_NAME_BUFSZ], size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return (int)i;
    return -1;
}

int cns_policy_purpose(const cns_policy *p, const char *name)
{
    return name ? cns__find(p->purposes, p->n_purposes, name, strlen(name)) : -1;
}

int cns_policy_channel(const cns_policy *p, const char *name)
{
    return name ? cns__find(p->channels, p->n_channels, name, strlen(name)) : -1;
}

int cns_policy_channel_ok(const cns_policy *p, const char *name)
{
    return name && (strcmp(name, CNS_ALL_CHANNELS) == 0 || cns_policy_channel(p, name) >= 0);
}

int cns_policy_jurisdiction(const cns_policy *p, const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < p->n_jurisdictions; i++)
        if (strcmp(p->jurisdictions[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *cns_policy_default_jurisdiction(const cns_policy *p)
{
    return p->jurisdictions[p->default_jurisdiction].name;
}

/* ------------------------------------------------------------------ parsing */

/* Formats "<var>: at position <pos+1>: <why>" into err; returns -1. */
static int cns__fail(char *err, size_t errlen, const char *var, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int cns__fail(char *err, size_t errlen, const char *var, size_t pos, const char *fmt, ...)
{
    char why[CNS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: at position %zu: %s", var, pos + 1, why);
    return -1;
}

/* Parses one name at s[*pos]; on success copies it to out, advances *pos
 * and returns 0. */
static int cns__parse_name(const char *var, const char *s, size_t *pos, char out[CNS_NAME_BUFSZ],
                           const char *what, char *err, size_t errlen)
{
    size_t len = cns__name_len(s + *pos);
    if (len == 0)
        return cns__fail(err, errlen, var, *pos, "expected a %s name ([a-z0-9_-]), got %s", what,
                         s[*pos] ? "another character" : "the end");
    if (len > CNS_NAME_MAX)
        return cns__fail(err, errlen, var, *pos, "%s name longer than %d characters", what,
                         CNS_NAME_MAX);
    memcpy(out, s + *pos, len);
    out[len] = '\0';
    *pos += len;
    return 0;
}

/* Parses a comma-separated list of distinct names into names[0..max). */
static int cns__parse_list(const char *var, const char *s, char (*names)[CNS_NAME_BUFSZ],
                           size_t max, size_t *n, const char *what, char *err, size_t errlen)
{
    size_t pos = 0;
    *n = 0;
    for (;;) {
        char name[CNS_NAME_BUFSZ];
        size_t at = pos;
        if (cns__parse_name(var, s, &pos, name, what, err, errlen) != 0)
            return -1;
        if (cns__find((const char(*)[CNS_NAME_BUFSZ])names, *n, name, strlen(name)) >= 0)
            return cns__fail(err, errlen, var, at, "%s \"%s\" listed twice", what, name);
        if (*n == max)
            return cns__fail(err, errlen, var, at, "more than %zu %ss", max, what);
        memcpy(names[(*n)++], name, sizeof name);
        if (s[pos] == '\0')
            return 0;
        if (s[pos] != ',')
            return cns__fail(err, errlen, var, pos, "expected ',' or the end");
        pos++;
    }
}

/* Parses "<purpose>=allow|deny[,...]" at s[*pos] into j, up to ';' or the end. */
static int cns__parse_defaults(const cns_policy *p, const char *s, size_t *pos,
                               cns_jurisdiction *j, char *err, size_t errlen)
{
    const char *var = CNS_ENV_POLICY;
    if (s[*pos] == ';' || s[*pos] == '\0')
        return 0; /* "ccpa:" - no defaults */
    for (;;) {
        char purpose[CNS_NAME_BUFSZ];
        size_t at = *pos;
        if (cns__parse_name(var, s, pos, purpose, "purpose", err, errlen) != 0)
            return -1;
        int pi = cns_policy_purpose(p, purpose);
        if (pi < 0)
            return cns__fail(err, errlen, var, at, "unknown purpose \"%s\" (not in %s)", purpose,
                             CNS_ENV_PURPOSES);
        if (j->unset[pi] != CNS_DEFAULT_NONE)
            return cns__fail(err, errlen, var, at, "purpose \"%s\" given twice for %s", purpose,
                             j->name);
        if (s[*pos] != '=')
            return cns__fail(err, errlen, var, *pos, "expected '=' after \"%s\"", purpose);
        (*pos)++;
        if (strncmp(s + *pos, "allow", 5) == 0 && !cns__name_char(s[*pos + 5])) {
            j->unset[pi] = CNS_DEFAULT_ALLOW;
            *pos += 5;
        } else if (strncmp(s + *pos, "deny", 4) == 0 && !cns__name_char(s[*pos + 4])) {
            j->unset[pi] = CNS_DEFAULT_DENY;
            *pos += 4;
        } else {
            return cns__fail(err, errlen, var, *pos, "expected allow or deny");
        }
        if (s[*pos] == ';' || s[*pos] == '\0')
            return 0;
        if (s[*pos] != ',')
            return cns__fail(err, errlen, var, *pos, "expected ',', ';' or the end");
        (*pos)++;
    }
}

static int cns__parse_policy(cns_policy *p, const char *s, char *err, size_t errlen)
{
    const char *var = CNS_ENV_POLICY;
    size_t pos = 0;
    for (;;) {
        cns_jurisdiction j;
        memset(&j, 0, sizeof j);
        size_t at = pos;
        if (cns__parse_name(var, s, &pos, j.name, "jurisdiction", err, errlen) != 0)
            return -1;
        if (cns_policy_jurisdiction(p, j.name) >= 0)
            return cns__fail(err, errlen, var, at, "jurisdiction \"%s\" given twice", j.name);
        if (p->n_jurisdictions == CNS_MAX_JURISDICTIONS)
            return cns__fail(err, errlen, var, at, "more than %d jurisdictions",
                             CNS_MAX_JURISDICTIONS);
        if (s[pos] != ':')
            return cns__fail(err, errlen, var, pos, "expected ':' after \"%s\"", j.name);
        pos++;
        if (cns__parse_defaults(p, s, &pos, &j, err, errlen) != 0)
            return -1;
        p->jurisdictions[p->n_jurisdictions++] = j;
        if (s[pos] == '\0')
            return 0;
        pos++; /* ';' */
    }
}

int cns_policy_parse(cns_policy *p, const char *purposes, const char *channels,
                     const char *default_jurisdiction, const char *policy, char *err,
                     size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (cns__parse_list(CNS_ENV_PURPOSES, purposes ? purposes : CNS_DEFAULT_PURPOSES, p->purposes,
                        CNS_MAX_PURPOSES, &p->n_purposes, "purpose", err, errlen) != 0 ||
        cns__parse_list(CNS_ENV_CHANNELS, channels ? channels : CNS_DEFAULT_CHANNELS, p->channels,
                        CNS_MAX_CHANNELS, &p->n_channels, "channel", err, errlen) != 0 ||
        cns__parse_policy(p, policy ? policy : CNS_DEFAULT_POLICY, err, errlen) != 0)
        return -1;
    const char *dj = default_jurisdiction ? default_jurisdiction : CNS_DEFAULT_JURISDICTION;
    int ji = cns_policy_jurisdiction(p, dj);
    if (ji < 0)
        return cns__fail(err, errlen, CNS_ENV_DEFAULT_JURISDICTION, 0,
                         "\"%s\" is not a jurisdiction of %s", dj, CNS_ENV_POLICY);
    p->default_jurisdiction = (size_t)ji;
    return 0;
}

/* ------------------------------------------------------------------ names of enums */

static const char *const cns__status_names[] = { "unset", "granted", "denied", "revoked" };

int cns_status_parse(const char *s, cns_status *out)
{
    for (size_t i = 0; s && i < sizeof cns__status_names / sizeof cns__status_names[0]; i++)
        if (strcmp(s, cns__status_names[i]) == 0) {
            *out = (cns_status)i;
            return 0;
        }
    return -1;
}

const char *cns_status_name(cns_status s)
{
    return (unsigned)s < sizeof cns__status_names / sizeof cns__status_names[0]
               ? cns__status_names[s]
               : "unknown";
}

const char *cns_rule_name(cns_rule r)
{
    static const char *const names[] = { "unspecified",      "suppression",
                                         "explicit_channel", "explicit_all_channels",
                                         "jurisdiction_default", "global_default" };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "unknown";
}

/* ------------------------------------------------------------------ the decision */

static void cns__reason(cns_decision *out, const char *note, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cns__reason(cns_decision *out, const char *note, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    if (note && note[0] && n >= 0 && (size_t)n < sizeof out->reason)
        snprintf(out->reason + n, sizeof out->reason - (size_t)n, " %s", note);
}

/* Decides on an explicit entry; returns 1 when it decided. */
static int cns__explicit(const cns_check_input *in, cns_status st, const char *channel,
                         cns_rule rule, cns_decision *out)
{
    if (st == CNS_STATUS_UNSET)
        return 0;
    out->allowed = st == CNS_STATUS_GRANTED;
    out->rule = rule;
    out->status = st;
    cns__reason(out, in->note, "entry %s/%s is %s", in->purpose, channel, cns_status_name(st));
    return 1;
}

void cns_decide(const cns_policy *p, const cns_check_input *in, cns_decision *out)
{
    memset(out, 0, sizeof(*out));
    int ji = in->jurisdiction && in->jurisdiction[0] ? cns_policy_jurisdiction(p, in->jurisdiction)
                                                     : -1;
    const cns_jurisdiction *j = &p->jurisdictions[ji >= 0 ? (size_t)ji : p->default_jurisdiction];
    out->jurisdiction = j->name;
    out->status = CNS_STATUS_UNSET;

    if (in->suppressed) {
        out->rule = CNS_RULE_SUPPRESSION;
        cns__reason(out, in->note, "%s is suppressed (%s)", in->suppressed,
                    in->suppression_reason && in->suppression_reason[0] ? in->suppression_reason
                                                                        : "no reason given");
        return;
    }
    if (cns__explicit(in, in->channel_status, in->channel, CNS_RULE_EXPLICIT_CHANNEL, out) ||
        cns__explicit(in, in->all_status, CNS_ALL_CHANNELS, CNS_RULE_EXPLICIT_ALL_CHANNELS, out))
        return;
    int pi = cns_policy_purpose(p, in->purpose);
    cns_default d = pi >= 0 ? j->unset[pi] : CNS_DEFAULT_NONE;
    if (d != CNS_DEFAULT_NONE) {
        out->allowed = d == CNS_DEFAULT_ALLOW;
        out->rule = CNS_RULE_JURISDICTION_DEFAULT;
        cns__reason(out, in->note, "%s default for %s is %s (no entry)", j->name, in->purpose,
                    out->allowed ? "allow" : "deny");
        return;
    }
    out->rule = CNS_RULE_GLOBAL_DEFAULT;
    cns__reason(out, in->note, "no entry and no %s default for %s: global default is deny",
                j->name, in->purpose);
}
