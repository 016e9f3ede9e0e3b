/* cns_policy: the consent policy — which purposes and channels exist, what
 * an unset entry means in each jurisdiction — and the decision that answers
 * CheckConsent. Pure functions over caller-owned structs: no I/O, no
 * allocation, no global state, so the unit tests cover every rule.
 *
 * Decision order (docs/consent.md), first match decides:
 *   1. an identifier of the profile (or the one asked about) is suppressed
 *      for the channel or for every channel        -> deny, SUPPRESSION
 *   2. an entry (purpose, channel) granted/denied/revoked -> EXPLICIT_CHANNEL
 *   3. an entry (purpose, "*") granted/denied/revoked     -> EXPLICIT_ALL_CHANNELS
 *   4. the jurisdiction's default for the purpose         -> JURISDICTION_DEFAULT
 *   5. deny                                               -> GLOBAL_DEFAULT
 * An entry whose status is unset counts as no entry.
 *
 * Configuration syntax (each parsed strictly; an error names the variable
 * and the 1-based position):
 *   purposes, channels   comma-separated names [a-z0-9_-]{1,32}, no repeats
 *   policy               <jurisdiction>:<purpose>=allow|deny[,...][;<jurisdiction>:...]
 *                        a purpose left out of a jurisdiction has no default
 *                        there (rule 5 decides). */
#ifndef CNS_POLICY_H
#define CNS_POLICY_H

#include <stddef.h>

/* Limits of the configuration. */
#define CNS_NAME_MAX 32          /* longest purpose, channel or jurisdiction name */
#define CNS_NAME_BUFSZ (CNS_NAME_MAX + 1)
#define CNS_MAX_PURPOSES 32
#define CNS_MAX_CHANNELS 64
#define CNS_MAX_JURISDICTIONS 16
#define CNS_REASON_MAX 512       /* a decision's readable reason */
#define CNS_ERR_MAX 256          /* configuration error text */

/* The channel name that means every channel. */
#define CNS_ALL_CHANNELS "*"

/* Environment variables and their defaults (docs/consent.md). */
#define CNS_ENV_PURPOSES "CDP_CONSENT_PURPOSES"
#define CNS_ENV_CHANNELS "CDP_CONSENT_CHANNELS"
#define CNS_ENV_DEFAULT_JURISDICTION "CDP_CONSENT_DEFAULT_JURISDICTION"
#define CNS_ENV_POLICY "CDP_CONSENT_POLICY"
#define CNS_DEFAULT_PURPOSES "marketing,analytics,personalization"
#define CNS_DEFAULT_CHANNELS "email,sms,whatsapp,rcs,viber,push,voice,webhook,chat"
#define CNS_DEFAULT_JURISDICTION "gdpr"
#define CNS_DEFAULT_POLICY                                                                  \
    "gdpr:marketing=deny,analytics=deny,personalization=deny;"                              \
    "ccpa:marketing=allow,analytics=allow,personalization=allow"

/* Values equal to cdp.v1.ConsentStatus. */
typedef enum {
    CNS_STATUS_UNSET = 0,
    CNS_STATUS_GRANTED = 1,
    CNS_STATUS_DENIED = 2,
    CNS_STATUS_REVOKED = 3,
} cns_status;

/* Values equal to cdp.v1.DecisionRule. */
typedef enum {
    CNS_RULE_UNSPECIFIED = 0,
    CNS_RULE_SUPPRESSION = 1,
    CNS_RULE_EXPLICIT_CHANNEL = 2,
    CNS_RULE_EXPLICIT_ALL_CHANNELS = 3,
    CNS_RULE_JURISDICTION_DEFAULT = 4,
    CNS_RULE_GLOBAL_DEFAULT = 5,
} cns_rule;

/* What an unset entry means for one purpose in one jurisdiction. */
typedef enum {
    CNS_DEFAULT_NONE = 0,  /* not configured: the global default (deny) */
    CNS_DEFAULT_ALLOW = 1,
    CNS_DEFAULT_DENY = 2,
} cns_default;

typedef struct {
    char name[CNS_NAME_BUFSZ];
    cns_default unset[CNS_MAX_PURPOSES]; /* by purpose index */
} cns_jurisdiction;

typedef struct {
    size_t n_purposes, n_channels, n_jurisdictions;
    char purposes[CNS_MAX_PURPOSES][CNS_NAME_BUFSZ];
    char channels[CNS_MAX_CHANNELS][CNS_NAME_BUFSZ];
    cns_jurisdiction jurisdictions[CNS_MAX_JURISDICTIONS];
    size_t default_jurisdiction; /* index into jurisdictions */
} cns_policy;

/* Builds p from the four configuration strings (NULL takes the default).
 * Returns 0, or -1 with err set to "<VARIABLE>: at position <n>: <why>"
 * (p is then unusable). */
int cns_policy_parse(cns_policy *p, const char *purposes, const char *channels,
                     const char *default_jurisdiction, const char *policy, char *err,
                     size_t errlen);

/* Index of a configured name, or -1. cns_policy_channel also answers -1
 * for "*" (callers test cns_policy_channel_ok when "*" is allowed). */
int cns_policy_purpose(const cns_policy *p, const char *name);
int cns_policy_channel(const cns_policy *p, const char *name);
int cns_policy_jurisdiction(const cns_policy *p, const char *name);
/* 1 when name is a configured channel or "*". */
int cns_policy_channel_ok(const cns_policy *p, const char *name);

/* The default jurisdiction's name. */
const char *cns_policy_default_jurisdiction(const cns_policy *p);

/* "granted", "denied", "revoked", "unset" <-> cns_status. parse returns
 * -1 for anything else (case-sensitive). */
int cns_status_parse(const char *s, cns_status *out);
const char *cns_status_name(cns_status s);
/* "suppression", "explicit_channel", ... (metric labels). */
const char *cns_rule_name(cns_rule r);

/* What the decision needs to know, all read before deciding. */
typedef struct {
    const char *purpose;            /* a configured purpose */
    const char *channel;            /* a configured channel */
    const char *jurisdiction;       /* the profile's; NULL or "" or unknown: the default */
    cns_status channel_status;      /* entry (purpose, channel); UNSET when none */
    cns_status all_status;          /* entry (purpose, "*"); UNSET when none */
    const char *suppressed;         /* "type:value" of a suppressed identifier, or NULL */
    const char *suppression_reason; /* its reason (may be NULL) */
    const char *note;               /* appended to the reason, e.g. "(identifier not
                                       known to identity)"; may be NULL */
} cns_check_input;

typedef struct {
    int allowed;
    cns_rule rule;
    cns_status status;              /* of the deciding entry; UNSET otherwise */
    const char *jurisdiction;       /* the jurisdiction applied (points into the policy) */
    char reason[CNS_REASON_MAX];
} cns_decision;

/* Decides in the order above. Never fails. */
void cns_decide(const cns_policy *p, const cns_check_input *in, cns_decision *out);

#endif
